"""Two server processes behind one PostgreSQL and one Redis: a request made on one process is paired with a
specialist connected to the other, the room works across them (notes, ECG, WebRTC), twenty simultaneous
accepts have exactly one winner, a killed process resumes the offer timers from the database, and a Redis
restart loses nothing that was saved."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import wfdb
from aiortc.mediastreams import VideoStreamTrack
from prometheus_client.parser import text_string_to_metric_families

from teleconsult.domain.waveform import FrameHeader, SignalScale, encode_frame
from teleconsult.rtc_peer import RoomPeer
from tests.e2e.cluster import Client, Cluster, Node, api, poll, token_for
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

# Long enough for a killed process to come back (import time on a busy machine) before the offer runs out.
EMERGENCY_TIMEOUT_S = 15
RECORD_100 = ROOT / "tests" / "data" / "physionet" / "100"


@pytest.fixture(scope="module")
def cluster(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster.start(
        tmp_path_factory.mktemp("cluster"), pg_url, offer_timeout_emergency_s=str(EMERGENCY_TIMEOUT_S)
    )
    yield running
    running.close()


@pytest.fixture
def nodes(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Both processes and Redis up; on failure the servers' logs of this test are printed."""
    cluster.ensure_up()
    marks = cluster.log_marks()
    failed = request.session.testsfailed
    yield cluster
    if request.session.testsfailed > failed:
        print(cluster.logs_since(marks))


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    await asyncio.gather(*(c.close() for c in made))


class People:
    """API tokens (one login per user per test) and connected socket.io clients."""

    def __init__(self, cluster: Cluster, clients: list[Client]) -> None:
        self._cluster = cluster
        self._clients = clients
        self._tokens: dict[str, str] = {}
        self.user_ids: dict[str, int] = {}

    async def token(self, username: str) -> str:
        if username not in self._tokens:
            self._tokens[username] = await token_for(self._cluster.any_url(), username)
            rows = await self._cluster.query("SELECT id FROM users WHERE username = :u", u=username)
            self.user_ids[username] = rows[0][0]
        return self._tokens[username]

    async def connect(self, username: str, node: Node) -> Client:
        client = Client(f"{username}@{node.name}")
        self._clients.append(client)
        return await client.connect(node.url, await self.token(username))


@pytest.fixture
def people(nodes: Cluster, clients: list[Client]) -> People:
    return People(nodes, clients)


async def ready_for_offers(specialist: Client) -> None:
    """Available, and seen as connected and on call by every process (the lease is written on connect)."""

    async def ready() -> bool:
        ack = await specialist.ok("presence.set", {"availability": "available"})
        presence = ack["presence"]
        return bool(presence["connected"] and presence["on_call"])

    await poll(ready, 10, f"{specialist.name} connected, on call and available", every=0.2)


async def request_consultation(node: Node, token: str, query: str, urgency: str, summary: str) -> int:
    status, found = await api(node.url, "GET", f"/api/v1/patients?q={query}", token)
    assert status == 200 and found["patients"], found
    status, created = await api(
        node.url,
        "POST",
        "/api/v1/consultations",
        token,
        {"patient_id": found["patients"][0]["id"], "specialty": "cardiology", "urgency": urgency, "summary": summary},
    )
    assert status == 201, created
    return int(created["id"])


async def settle(cluster: Cluster, people: People, cid: int) -> None:
    """Leave no case open or accepted behind: the next test needs both cardiologists free."""
    [(status, specialist, facility)] = await cluster.query(
        "SELECT c.status, u.username, f.code FROM consultations c "
        "JOIN facilities f ON f.id = c.requesting_facility_id "
        "LEFT JOIN users u ON u.id = c.specialist_user_id WHERE c.id = :cid",
        cid=cid,
    )
    url = cluster.any_url()
    if status in ("accepted", "in_progress"):
        username = str(specialist)
        body = {"recommendation": "Theo dõi tại tuyến dưới.", "icd10_code": "I20.0", "outcome": "follow_up"}
        code, out = await api(url, "POST", f"/api/v1/consultations/{cid}/end", await people.token(username), body)
        assert code == 200, out
    elif status in ("requested", "offered"):
        clinician = "clinician" if facility == "TYT-TV" else "clinician2"
        code, out = await api(url, "POST", f"/api/v1/consultations/{cid}/cancel", await people.token(clinician))
        assert code == 200, out


def ecg_frame(stream_id: int, seq: int, record: Any, step: int = 72) -> bytes:
    scales = tuple(
        SignalScale(float(g), int(b), u) for g, b, u in zip(record.adc_gain, record.baseline, record.units, strict=True)
    )
    piece = record.d_signal[seq * step : (seq + 1) * step]
    return encode_frame(FrameHeader(stream_id, seq, seq * step, 360_000, len(piece), scales), piece)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= set(ls))


# -- 1. pairing across processes, then the room: notes, ECG; metrics ---------------------------------------------


async def test_a_request_on_one_process_is_paired_with_a_specialist_on_the_other(
    nodes: Cluster, people: People
) -> None:
    a, b = nodes["A"], nodes["B"]
    clinician = await people.connect("clinician", a)
    specialist = await people.connect("cardiologist", b)
    await ready_for_offers(specialist)

    summary = "Đau ngực trái 2 giờ, ST chênh lên DII, DIII, aVF. HA 100/60."
    cid = await request_consultation(a, await people.token("clinician"), "giang", "urgent", summary)
    try:
        # The offer rings on B, with what the specialist needs to decide.
        ring = await specialist.wait_for("pairing.offer", lambda e: e["consultation"]["id"] == cid)
        assert ring["offer"]["status"] == "pending"
        assert ring["offer"]["specialist_user_id"] == people.user_ids["cardiologist"]
        assert ring["consultation"]["summary"] == summary
        assert ring["consultation"]["patient_name"] == "Giàng Thị Mỷ"
        assert ring["consultation"]["urgency"] == "urgent"

        accepted = await specialist.ok("pairing.accept", {"consultation_id": cid})
        assert accepted["consultation"]["status"] == "accepted"
        # The requester on A hears of it from B's decision.
        status = await clinician.wait_for(
            "pairing.status", lambda e: e["status"]["consultation_id"] == cid and e["status"]["state"] == "accepted"
        )
        assert status["status"]["specialist_name"] == "PGS. Phạm Minh Tuấn"
        await clinician.wait_for(
            "consultation.updated",
            lambda e: e["consultation"]["id"] == cid and e["consultation"]["status"] == "accepted",
        )

        await clinician.ok("room.join", {"consultation_id": cid})
        await specialist.ok("room.join", {"consultation_id": cid})
        joined = await clinician.wait_for("room.peer_joined", lambda e: e["consultation_id"] == cid)
        assert joined["peer"]["user_id"] == people.user_ids["cardiologist"]

        # A note written on A reaches B.
        note = {"consultation_id": cid, "text": "Cho aspirin 300 mg nhai.", "client_id": uuid.uuid4().hex}
        saved = await clinician.ok("note.add", note)
        assert saved["created"] is True
        got = await specialist.wait_for("note.added", lambda e: e["note"]["client_id"] == note["client_id"])
        assert got["note"]["text"] == note["text"] and got["note"]["author_name"] == "BS. Nguyễn Thị Lan"

        # The bedside gateway on A streams an ECG frame; the specialist on B gets exactly those bytes.
        record = await asyncio.to_thread(wfdb.rdrecord, str(RECORD_100), physical=False, sampto=72)
        gateway = await people.connect("clinician", a)
        signals = [
            {"name": n, "units": u, "gain": float(g), "baseline": int(b)}
            for n, u, g, b in zip(record.sig_name, record.units, record.adc_gain, record.baseline, strict=True)
        ]
        opened = await gateway.ok(
            "stream.open",
            {
                "consultation_id": cid,
                "source_key": "bedside-monitor-cluster",
                "label": "MIT-BIH 100",
                "sample_rate": 360,
                "signals": signals,
            },
        )
        frame = ecg_frame(int(opened["stream"]["id"]), 0, record)
        frame_ack = await gateway.ok("stream.frame", frame)
        assert frame_ack == {"ok": True, "seq": 0, "duplicate": False}
        assert await specialist.wait_for("stream.frame") == frame

        # Each process counts what it did; together they tell the whole story.
        scraped = {}
        for node in (a, b):
            code, body = await api(node.url, "GET", "/metrics")
            assert code == 200, body
            scraped[node.name] = metric_values(body)
        both = list(scraped.values())
        assert sum(total(v, "teleconsult_pairing_offers_total", urgency="urgent") for v in both) >= 1
        assert sum(total(v, "teleconsult_pairing_accepts_total", urgency="urgent") for v in both) >= 1
        assert sum(total(v, "teleconsult_pairing_seconds_bucket", urgency="urgent", le="+Inf") for v in both) >= 1
        assert sum(total(v, "teleconsult_pairing_seconds_count", urgency="urgent") for v in both) >= 1
        for name, values in scraped.items():
            assert total(values, "teleconsult_connections") > 0, name
    finally:
        await settle(nodes, people, cid)


# -- 2. WebRTC between the processes ------------------------------------------------------------------------------


async def test_webrtc_connects_between_peers_on_different_processes(nodes: Cluster, people: People) -> None:
    a, b = nodes["A"], nodes["B"]
    clin_token, spec_token = await people.token("clinician"), await people.token("cardiologist")
    cid = await request_consultation(a, clin_token, "giang", "urgent", "Hồi hộp, ngất thoáng qua.")
    code, out = await api(b.url, "POST", f"/api/v1/consultations/{cid}/accept", spec_token)
    assert code == 200, out

    def video() -> list[VideoStreamTrack]:
        return [VideoStreamTrack()]

    at_clinic = RoomPeer(a.url, clin_token, cid, track_factory=video)
    at_hub = RoomPeer(b.url, spec_token, cid, track_factory=video)
    try:
        await at_clinic.join()
        ack = await at_hub.join()  # the newcomer offers to those already in the room, wherever they are connected
        listed = [p["peer_id"] for p in ack["participants"]]
        if listed != [at_clinic.peer_id]:
            # Evidence for the report: can B relay a signal to the peer on A at all?
            probe = await at_hub.sio.call("rtc.signal", {"consultation_id": cid, "to": at_clinic.peer_id}, timeout=10)
            pytest.fail(
                f"room.join on B lists {listed} as already in the room, not the clinician's peer "
                f"{at_clinic.peer_id} joined on A; rtc.signal from B to that peer is answered {probe}"
            )
        clinic_side = await at_clinic.wait_connected(timeout=20)
        hub_side = await at_hub.wait_connected(timeout=20)
        assert clinic_side.pc.connectionState == hub_side.pc.connectionState == "connected"
        await asyncio.wait_for(hub_side.channel_open.wait(), 10)
        await asyncio.wait_for(clinic_side.channel_open.wait(), 10)
        hub_side.channel.send("ST chênh lên: chuyển tuyến ngay")  # type: ignore[union-attr]
        assert await asyncio.wait_for(clinic_side.messages.get(), 10) == "ST chênh lên: chuyển tuyến ngay"
        frame = await asyncio.wait_for(clinic_side.tracks[0].recv(), 10)
        assert frame.width > 0
    finally:
        await at_hub.close()
        await at_clinic.close()
        await settle(nodes, people, cid)


# -- 3. twenty accepts at once on PostgreSQL -----------------------------------------------------------------------


async def test_twenty_simultaneous_accepts_on_two_processes_have_exactly_one_winner(
    nodes: Cluster, people: People
) -> None:
    a, b = nodes["A"], nodes["B"]
    first = await people.connect("cardiologist", a)
    second = await people.connect("cardiologist2", b)
    await asyncio.gather(ready_for_offers(first), ready_for_offers(second))
    # Côn Đảo is supported by Chợ Rẫy and Bạch Mai: an emergency there rings both cardiologists at once.
    cid = await request_consultation(
        a, await people.token("clinician2"), "phan", "emergency", "Ngừng tim ngoại viện, đã có ROSC."
    )
    try:
        for ringing in (first, second):
            await ringing.wait_for("pairing.offer", lambda e: e["consultation"]["id"] == cid)
        accepters = await asyncio.gather(
            *(
                people.connect(username, node)
                for node in (a, b)
                for username in ("cardiologist", "cardiologist2")
                for _ in range(5)
            )
        )
        go = asyncio.Event()

        async def accept(client: Client) -> dict[str, Any]:
            await go.wait()
            ack: dict[str, Any] = await client.call("pairing.accept", {"consultation_id": cid}, timeout=20)
            return ack

        racing = [asyncio.ensure_future(accept(c)) for c in accepters]
        await asyncio.sleep(0)  # every task is parked on the event
        go.set()
        acks = await asyncio.gather(*racing)

        winners = [c for c, ack in zip(accepters, acks, strict=True) if ack["ok"]]
        codes = sorted(ack["error"]["code"] for ack in acks if not ack["ok"])
        assert len(winners) == 1 and codes == ["conflict"] * 19, acks
        winner = winners[0].name.split("@")[0]
        loser_client, loser = (second, "cardiologist2") if winner == "cardiologist" else (first, "cardiologist")

        rows = await nodes.query("SELECT status, specialist_user_id FROM consultations WHERE id = :cid", cid=cid)
        assert [tuple(r) for r in rows] == [("accepted", people.user_ids[winner])]
        offers = await nodes.query(
            "SELECT specialist_user_id, status FROM pairing_offers WHERE consultation_id = :cid ORDER BY id", cid=cid
        )
        assert sorted(tuple(o) for o in offers) == sorted(
            [(people.user_ids[winner], "accepted"), (people.user_ids[loser], "taken")]
        )
        accepts = await nodes.query(
            "SELECT count(*) FROM audit_events WHERE action = 'consultation.accept' AND outcome = 'success' "
            "AND entity_id = :cid",
            cid=str(cid),
        )
        assert accepts[0][0] == 1
        closed = await loser_client.wait_for("pairing.offer_closed", lambda e: e["offer"]["consultation_id"] == cid)
        assert closed["offer"]["status"] == "taken"
    finally:
        await settle(nodes, people, cid)


# -- 4. Redis restarts: nothing saved is lost, live fan-out comes back ---------------------------------------------


async def test_a_redis_restart_loses_no_saved_note_and_live_notes_resume(nodes: Cluster, people: People) -> None:
    a, b = nodes["A"], nodes["B"]
    cid = await request_consultation(a, await people.token("clinician"), "giang", "urgent", "Khó thở.")
    code, out = await api(b.url, "POST", f"/api/v1/consultations/{cid}/accept", await people.token("cardiologist"))
    assert code == 200, out
    clinician = await people.connect("clinician", a)
    specialist = await people.connect("cardiologist", b)
    try:
        await clinician.ok("room.join", {"consultation_id": cid})
        await specialist.ok("room.join", {"consultation_id": cid})
        await poll(lambda: nodes.redis.subscribers() == 2, 10, "both processes subscribed to Redis")

        async def note(text: str) -> dict[str, Any]:
            ack: dict[str, Any] = await clinician.ok(
                "note.add", {"consultation_id": cid, "text": text, "client_id": uuid.uuid4().hex}
            )
            assert ack["created"] is True and ack["note"]["text"] == text
            return ack

        await note("Trước khi Redis dừng.")
        await specialist.wait_for("note.added", lambda e: e["note"]["text"] == "Trước khi Redis dừng.")

        nodes.redis.stop()
        await note("Trong lúc Redis dừng: SpO2 88%.")
        code, listed = await api(b.url, "GET", f"/api/v1/consultations/{cid}/notes", await people.token("cardiologist"))
        assert code == 200 and "Trong lúc Redis dừng: SpO2 88%." in [n["text"] for n in listed["notes"]], listed

        nodes.redis.start()  # same port, empty: the managers must subscribe again by themselves
        await poll(lambda: nodes.redis.subscribers() == 2, 45, "both processes subscribed to Redis again", every=0.25)
        await note("Sau khi Redis chạy lại.")
        await specialist.wait_for("note.added", lambda e: e["note"]["text"] == "Sau khi Redis chạy lại.", timeout=15)
        code, listed = await api(b.url, "GET", f"/api/v1/consultations/{cid}/notes", await people.token("cardiologist"))
        assert [n["text"] for n in listed["notes"]] == [
            "Trước khi Redis dừng.",
            "Trong lúc Redis dừng: SpO2 88%.",
            "Sau khi Redis chạy lại.",
        ]
    finally:
        await settle(nodes, people, cid)


# -- 5. a killed process resumes the offer timers from the database ------------------------------------------------


async def test_a_killed_process_resumes_the_offer_timer_and_escalates(
    nodes: Cluster, people: People, clients: list[Client]
) -> None:
    a = nodes["A"]
    nodes["B"].stop()  # alone, A is the only one that can run the timer after its restart
    specialist = await people.connect("cardiologist", a)
    await ready_for_offers(specialist)
    clin_token = await people.token("clinician")
    await people.token("coordinator")  # logged in before the clock starts: after the crash only reconnects count
    cid = await request_consultation(a, clin_token, "giang", "emergency", "Đột quỵ? Liệt nửa người phải.")
    try:
        ring = await specialist.wait_for("pairing.offer", lambda e: e["consultation"]["id"] == cid)
        offer_id = ring["offer"]["id"]
        deadline = datetime.fromisoformat(ring["offer"]["deadline_at"])

        a.kill()
        await asyncio.to_thread(a.start)
        # Everyone comes back to the restarted process.
        specialist, clinician, coordinator = await asyncio.gather(
            people.connect("cardiologist", a), people.connect("clinician", a), people.connect("coordinator", a)
        )
        back_at = datetime.now(UTC)
        back_in_time = back_at < deadline
        if back_in_time:
            # The offer survived the crash: it is still ringing, with the same deadline.
            ringing = await specialist.ok("pairing.offers", {})
            assert [(o["offer"]["id"], o["offer"]["deadline_at"]) for o in ringing["offers"]] == [
                (offer_id, ring["offer"]["deadline_at"])
            ]

        async def expired() -> bool:
            rows = await nodes.query("SELECT status FROM pairing_offers WHERE id = :id", id=offer_id)
            return bool(rows[0][0] == "expired")

        wait_s = max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 15
        await poll(expired, wait_s, f"offer {offer_id} expired in the database", every=0.2)

        # Nobody else supports Tả Van in cardiology: the hub's coordinator is alerted (the next decision
        # follows the expiry in a transaction of its own, so poll).
        async def escalated() -> Any:
            code, status = await api(a.url, "GET", f"/api/v1/consultations/{cid}/pairing", clin_token)
            assert code == 200, status
            return status if status["state"] == "escalated" else None

        status = await poll(escalated, 10, f"consultation {cid} escalated", every=0.2)
        assert status["escalated_at"] and status["offers"] == []
        [(escalated_at,)] = await nodes.query("SELECT escalated_at FROM consultations WHERE id = :cid", cid=cid)
        assert escalated_at is not None

        assert back_in_time, (
            f"the restarted server and its clients were back only at {back_at.isoformat()}, past the offer's "
            f"deadline {deadline.isoformat()}: the live notifications could not be checked"
        )
        closed = await specialist.wait_for("pairing.offer_closed", lambda e: e["offer"]["id"] == offer_id)
        assert closed["offer"]["status"] == "expired"
        alert = await coordinator.wait_for("pairing.escalated", lambda e: e["status"]["consultation_id"] == cid)
        assert alert["status"]["state"] == "escalated"
        await clinician.wait_for(
            "pairing.status", lambda e: e["status"]["consultation_id"] == cid and e["status"]["state"] == "escalated"
        )
    finally:
        await settle(nodes, people, cid)
