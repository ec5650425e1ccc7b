"""Short-lived TURN credentials for coturn's ``use-auth-secret`` (the TURN REST API scheme).

username = "<expiry unix time>:<user id>", password = base64(HMAC-SHA1(shared secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any


def credentials(secret: str, user_id: int, now_s: int, ttl_s: int) -> tuple[str, str]:
    username = f"{now_s + ttl_s}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(
    static: list[dict[str, Any]],
    *,
    turn_urls: list[str],
    secret: str | None,
    ttl_s: int,
    user_id: int,
    now_s: int,
) -> list[dict[str, Any]]:
    """The static STUN/TURN entries, plus one entry for our coturn with fresh credentials when configured."""
    servers = [dict(s) for s in static]
    if turn_urls and secret:
        username, password = credentials(secret, user_id, now_s, ttl_s)
        servers.append({"urls": list(turn_urls), "username": username, "credential": password})
    return servers
