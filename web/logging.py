"""Access logging without query strings: a search for a patient's name or CCCD must not reach the logs."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class PathOnlyAccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms', request.remote, request.method, request.path, response.status, time * 1000
        )
