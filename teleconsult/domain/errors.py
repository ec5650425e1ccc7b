"""Errors the domain and services raise; transports map ``code`` to their own status/ack."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    code = "invalid"


class NotFound(DomainError):
    code = "not_found"


class PermissionDenied(DomainError):
    code = "forbidden"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Conflict(DomainError):
    """The action lost a race or the entity is in the wrong state (e.g. already accepted)."""

    code = "conflict"


class RoomFull(DomainError):
    code = "room_full"


class Unavailable(DomainError):
    """A component the action needs (the SFU, say) is not configured or not reachable; retry later."""

    code = "unavailable"
