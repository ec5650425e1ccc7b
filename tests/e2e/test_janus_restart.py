"""Janus restarts in the middle of a conference (an operator's restart: same address, same secrets). The server
notices that Janus forgot its session and the room, makes a new session and creates the session's room again
with the same id, secret and pin, so every process of ours finds it; nothing is asked of the room's rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from teleconsult.clock import FakeClock
from teleconsult.janus_local import JanusNotAvailable, start
from teleconsult.services import Services
from teleconsult.sfu import JanusClient
from tests.conftest import World
from tests.service.test_conference_room import at, booked


async def test_the_room_comes_back_after_janus_restarts(
    services: Services, world: World, clock: FakeClock, tmp_path: Path
) -> None:
    try:
        janus = start(tmp_path / "first")
    except JanusNotAvailable as exc:
        pytest.fail(str(exc), pytrace=False)
    port = int(janus.url.rsplit(":", 1)[1].split("/", 1)[0])
    client = JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key)
    services.conference_room.sfu = client
    again = None
    try:
        cid = await booked(services, world)
        at(clock, 0)
        entered = await services.conference_room.enter(world.coord, cid, "p1:c", source="t")
        assert entered.session is not None
        first = await services.conference_room.media_access(world.coord, entered.session.id, "p1:c")
        assert await client.room_exists(first.room)

        janus.stop()
        again = start(tmp_path / "second", port=port, api_secret=janus.api_secret, admin_key=janus.admin_key)
        second = await services.conference_room.media_access(world.coord, entered.session.id, "p1:c")
        assert second == first, "the same room, secret and pin: the stored row stays right"
        assert await client.room_exists(second.room)
        publisher = await client.join_as_publisher(second, "after the restart")  # the pin still opens it
        await client.leave(publisher.handle)
    finally:
        await client.close()
        for running in (janus, again):
            if running is not None and running.process.poll() is None:
                running.stop()
