"""Typed keys for what the composition root stores on the aiohttp app."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from teleconsult.services import Services
from teleconsult.settings import Settings

SERVICES = web.AppKey("services", Services)
SETTINGS = web.AppKey("settings", Settings)
# Live counters from the signaling transport for /healthz, set by the composition root.
LIVE_STATS = web.AppKey("live_stats", Any)
