"""Who is connected to which consultation room: in this process, or across every process through Redis.

With one process, a dict is the truth. With several (TELECONSULT_REDIS_URL), each room is a Redis hash of its
members, each member tagged with the process that holds its connection; a process keeps a key alive while it
runs (renewed every third of the lease) and re-asserts its own members at the same time. A killed process's
members disappear when its key expires; after a Redis restart the live members are back within one renewal.
Membership is live state only: what was said and saved lives in the database.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


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

    @property
    def rooms(self) -> dict[int, dict[str, Member]]:
        return self._rooms


class RoomDirectory(Protocol):
    async def members(self, consultation_id: int) -> list[Member]: ...

    async def member(self, consultation_id: int, peer_id: str) -> Member | None: ...

    async def add(self, consultation_id: int, member: Member) -> None: ...

    async def remove(self, consultation_id: int, peer_id: str) -> Member | None: ...

    def rooms_of(self, peer_id: str) -> list[int]: ...

    def room_count(self) -> int: ...

    async def renew(self) -> None: ...

    async def close(self) -> None: ...


class LocalRooms:
    """One process: the registry is the truth."""

    def __init__(self) -> None:
        self.local = RoomRegistry()

    async def members(self, consultation_id: int) -> list[Member]:
        return self.local.members(consultation_id)

    async def member(self, consultation_id: int, peer_id: str) -> Member | None:
        return self.local.member(consultation_id, peer_id)

    async def add(self, consultation_id: int, member: Member) -> None:
        self.local.add(consultation_id, member)

    async def remove(self, consultation_id: int, peer_id: str) -> Member | None:
        return self.local.remove(consultation_id, peer_id)

    def rooms_of(self, peer_id: str) -> list[int]:
        return self.local.rooms_of(peer_id)

    def room_count(self) -> int:
        return self.local.room_count()

    async def renew(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisRooms(LocalRooms):
    """Several processes: room hashes in Redis; this process's own members also kept locally."""

    def __init__(self, redis: Any, instance_id: str, lease_s: float, *, prefix: str = "teleconsult") -> None:
        super().__init__()
        self.PREFIX = f"{prefix}:"
        self._redis = redis
        self._instance = instance_id
        self._lease_ms = int(lease_s * 1000)

    def _room_key(self, consultation_id: int) -> str:
        return f"{self.PREFIX}room:{consultation_id}"

    def _alive_key(self, instance_id: str) -> str:
        return f"{self.PREFIX}instance:{instance_id}"

    async def members(self, consultation_id: int) -> list[Member]:
        try:
            raw = await self._redis.hgetall(self._room_key(consultation_id))
            members = [Member(**json.loads(v)) for v in raw.values()]
            instances = sorted({m.connection_id.split(":", 1)[0] for m in members})
            alive = await self._redis.mget([self._alive_key(i) for i in instances]) if instances else []
        except Exception:
            # Redis is down: this process still knows its own members; remote ones come back with Redis.
            log.warning("room directory unavailable; using this process's members only")
            return await super().members(consultation_id)
        live = {i for i, flag in zip(instances, alive, strict=True) if flag is not None} | {self._instance}
        return [m for m in members if m.connection_id.split(":", 1)[0] in live]

    async def member(self, consultation_id: int, peer_id: str) -> Member | None:
        local = self.local.member(consultation_id, peer_id)
        if local is not None:
            return local
        return next((m for m in await self.members(consultation_id) if m.peer_id == peer_id), None)

    async def add(self, consultation_id: int, member: Member) -> None:
        await super().add(consultation_id, member)
        try:
            await self._redis.hset(self._room_key(consultation_id), member.peer_id, json.dumps(asdict(member)))
        except Exception:
            log.warning("could not publish a room member; the next renewal will")

    async def remove(self, consultation_id: int, peer_id: str) -> Member | None:
        member = await super().remove(consultation_id, peer_id)
        if member is None:
            # A member held by another process (a ghost being replaced): its process cleans up locally.
            member = next((m for m in await self.members(consultation_id) if m.peer_id == peer_id), None)
            remote = member is not None
        else:
            remote = False
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hdel(self._room_key(consultation_id), peer_id)
            if remote:
                # Tell the process holding the connection not to re-assert this member at its next renewal.
                pipe.set(self._gone_key(consultation_id, peer_id), "1", px=self._lease_ms * 3)
            await pipe.execute()
        except Exception:
            log.warning("could not remove a room member from the directory")
        return member

    def _gone_key(self, consultation_id: int, peer_id: str) -> str:
        return f"{self.PREFIX}gone:{consultation_id}:{peer_id}"

    async def renew(self) -> None:
        """Keep this process alive in the directory and re-assert its members (e.g. after a Redis restart)."""
        held = [(cid, m) for cid, room in self.local.rooms.items() for m in room.values()]
        if held:
            gone = await self._redis.mget([self._gone_key(cid, m.peer_id) for cid, m in held])
            for (cid, m), flag in zip(held, gone, strict=True):
                if flag is not None:  # replaced by a newer connection of the same user on another process
                    self.local.remove(cid, m.peer_id)
            held = [(cid, m) for (cid, m), flag in zip(held, gone, strict=True) if flag is None]
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._alive_key(self._instance), "1", px=self._lease_ms)
        for consultation_id, member in held:
            pipe.hset(self._room_key(consultation_id), member.peer_id, json.dumps(asdict(member)))
        await pipe.execute()

    async def close(self) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for consultation_id, room in self.local.rooms.items():
                for peer_id in room:
                    pipe.hdel(self._room_key(consultation_id), peer_id)
            pipe.delete(self._alive_key(self._instance))
            await pipe.execute()
        except Exception:
            log.warning("could not clean this process out of the room directory")
        await self._redis.aclose()


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
