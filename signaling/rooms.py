"""Who is connected to which consultation room, in this process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Member:
    peer_id: str
    user_id: int
    display_name: str
    role: str
    connection_id: str


@dataclass
class RoomRegistry:
    _rooms: dict[int, dict[str, Member]] = field(default_factory=dict)
    _by_peer: dict[str, set[int]] = field(default_factory=dict)

    def members(self, consultation_id: int) -> list[Member]:
        return list(self._rooms.get(consultation_id, {}).values())

    def member(self, consultation_id: int, peer_id: str) -> Member | None:
        return self._rooms.get(consultation_id, {}).get(peer_id)

    def add(self, consultation_id: int, member: Member) -> None:
        self._rooms.setdefault(consultation_id, {})[member.peer_id] = member
        self._by_peer.setdefault(member.peer_id, set()).add(consultation_id)

    def remove(self, consultation_id: int, peer_id: str) -> Member | None:
        room = self._rooms.get(consultation_id, {})
        member = room.pop(peer_id, None)
        if not room:
            self._rooms.pop(consultation_id, None)
        rooms_of_peer = self._by_peer.get(peer_id)
        if rooms_of_peer is not None:
            rooms_of_peer.discard(consultation_id)
            if not rooms_of_peer:
                self._by_peer.pop(peer_id, None)
        return member

    def rooms_of(self, peer_id: str) -> list[int]:
        return sorted(self._by_peer.get(peer_id, set()))

    def room_count(self) -> int:
        return len(self._rooms)


class TokenBucket:
    """Per-connection event rate limit: ``rate`` events/s sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
