"""Where a request came from, for the audit trail, when a reverse proxy stands in front."""

from __future__ import annotations


def forwarded_client(remote: str, forwarded_for: str, trusted_proxies: list[str]) -> str:
    """The client's address: behind a trusted proxy, the last hop that proxy added to X-Forwarded-For (earlier
    hops are whatever the client claimed); otherwise the peer address itself."""
    if remote in trusted_proxies and forwarded_for:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return remote[:64]
