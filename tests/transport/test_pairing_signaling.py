"""Pairing and presence over a real socket.io connection to the real composed server (demo seed: every
specialist on call around the clock; Côn Đảo (TYT-CD) is supported by Chợ Rẫy first, then Bạch Mai)."""

from __future__ import annotations

from typing import Any

import aiohttp

from teleconsult.cli import build_app
from teleconsult.settings import Settings
from tests.transport.conftest import Connect, Live, Peer

SUMMARY = "Nam 58 tuổi, khó thở, phù hai chân, ran ẩm hai đáy phổi."


async def request(live: Live, clinician: str, urgency: str = "urgent") -> int:
    token = await live.token(clinician)
    status, found = await live.api(
        "GET", "/api/v1/patients?q=" + ("giang" if clinician == "clinician" else "phan"), token
    )
    assert status == 200, found
    status, created = await live.api(
        "POST",
        "/api/v1/consultations",
        token,
        {"patient_id": found["patients"][0]["id"], "specialty": "cardiology", "urgency": urgency, "summary": SUMMARY},
    )
    assert status == 201, created
    return int(created["id"])


async def available(connect: Connect, username: str) -> Peer:
    peer = await connect(username)
    ack = await peer.call("presence.set", {"availability": "available"})
    assert ack["ok"] and ack["presence"]["connected"] and ack["presence"]["on_call"], ack
    return peer


async def status_until(peer: Peer, cid: int, state: str) -> dict[str, Any]:
    for _ in range(20):
        event = await peer.next("pairing.status", 20)
        if event["status"]["consultation_id"] == cid and event["status"]["state"] == state:
            return dict(event["status"])
    raise AssertionError(f"no {state} status for {cid}")


async def test_the_supporting_hub_rings_first_a_decline_moves_on_and_the_accept_is_seen_by_the_requester(
    live: Live, connect: Connect
) -> None:
    cho_ray = await available(connect, "cardiologist2")
    bach_mai = await available(connect, "cardiologist")
    requester = await connect("clinician2")

    cid = await request(live, "clinician2")

    ring = await cho_ray.next("pairing.offer", 20)
    assert ring["consultation"]["id"] == cid and ring["consultation"]["summary"] == SUMMARY
    assert ring["offer"]["hub_name"] == "Chợ Rẫy Hospital"
    await bach_mai.nothing("pairing.offer")
    offered = await status_until(requester, cid, "offered")
    assert [o["specialist_name"] for o in offered["offers"]] == ["TS. Lê Thu Hà"]
    assert "summary" not in offered and "patient_name" not in offered, "the status carries no patient identity"

    refused = await cho_ray.call("pairing.decline", {"offer_id": ring["offer"]["id"], "reason": ""})
    assert refused["error"]["code"] == "invalid"
    declined = await cho_ray.call("pairing.decline", {"offer_id": ring["offer"]["id"], "reason": "Đang trực mổ"})
    assert declined["ok"] and declined["offer"]["status"] == "declined"

    ring2 = await bach_mai.next("pairing.offer", 20)
    assert ring2["consultation"]["id"] == cid and ring2["offer"]["hub_name"] == "Bạch Mai Hospital"
    accepted = await bach_mai.call("pairing.accept", {"consultation_id": cid})
    assert accepted["ok"] and accepted["consultation"]["status"] == "accepted", accepted
    done = await status_until(requester, cid, "accepted")
    assert done["specialist_name"] == "PGS. Phạm Minh Tuấn" and done["queue_position"] is None
    closed = await bach_mai.next("pairing.offer_closed", 20)
    assert closed["offer"]["status"] == "accepted"


async def test_a_specialist_who_reloads_sees_what_still_rings_and_a_late_accept_hears_taken(
    live: Live, connect: Connect
) -> None:
    first = await available(connect, "cardiologist")
    cid = await request(live, "clinician", "emergency")
    await first.next("pairing.offer", 20)
    await first.client.disconnect()

    again = await connect("cardiologist")
    listed = await again.call("pairing.offers", {})
    assert [r["consultation"]["id"] for r in listed["offers"]] == [cid]

    status, _ = await live.api("POST", f"/api/v1/consultations/{cid}/accept", await live.token("cardiologist"))
    assert status == 200
    late = await again.call("pairing.accept", {"consultation_id": cid})
    assert late["error"]["code"] == "conflict"


async def test_nobody_available_escalates_to_the_hubs_coordinator_and_the_requester_is_told(
    live: Live, connect: Connect
) -> None:
    coordinator = await connect("coordinator")  # Bạch Mai's coordinator
    requester = await connect("clinician")
    away = await connect("cardiologist")
    assert (await away.call("presence.set", {"availability": "away"}))["ok"]

    cid = await request(live, "clinician")

    escalated = await coordinator.next("pairing.escalated", 20)
    assert escalated["status"]["consultation_id"] == cid and escalated["status"]["state"] == "escalated"
    await status_until(requester, cid, "escalated")
    queue = await coordinator.call("pairing.queue", {})
    assert [c["consultation_id"] for c in queue["cases"]] == [cid]
    staff = {s["presence"]["display_name"]: s for s in queue["staff"]}
    assert staff["PGS. Phạm Minh Tuấn"]["state"] == "away"

    target = staff["PGS. Phạm Minh Tuấn"]["presence"]["user_id"]
    handed = await coordinator.call("pairing.hand", {"consultation_id": cid, "specialist_user_id": target})
    assert handed["ok"] and handed["offer"]["handed_by_name"] == "CN. Vũ Thị Mai", handed
    ring = await away.next("pairing.offer", 20)
    assert ring["consultation"]["id"] == cid


async def test_pairing_events_refuse_bad_input_and_unauthorized_actions(live: Live, connect: Connect) -> None:
    clinician = await connect("clinician")
    specialist = await available(connect, "cardiologist")
    cid = await request(live, "clinician")
    ring = await specialist.next("pairing.offer", 20)

    cases: list[tuple[Peer, str, Any, str]] = [
        (clinician, "presence.set", {"availability": "available"}, "forbidden"),
        (specialist, "presence.set", {"availability": "asleep"}, "invalid"),
        (clinician, "pairing.decline", {"offer_id": ring["offer"]["id"], "reason": "no"}, "not_found"),
        (specialist, "pairing.decline", {"offer_id": "one", "reason": "x"}, "invalid"),
        (specialist, "pairing.decline", {"offer_id": ring["offer"]["id"], "reason": "x" * 501}, "invalid"),
        (clinician, "pairing.hand", {"consultation_id": cid, "specialist_user_id": 3}, "forbidden"),
        (clinician, "pairing.raise", {"consultation_id": cid, "urgency": "low"}, "invalid"),
        (clinician, "pairing.raise", {"consultation_id": cid, "urgency": "routine"}, "invalid"),
        (specialist, "pairing.raise", {"consultation_id": cid, "urgency": "emergency"}, "forbidden"),
        (clinician, "pairing.queue", {}, "forbidden"),
        (clinician, "pairing.status", {"consultation_id": cid, "extra": 1}, "invalid"),
        (clinician, "pairing.accept", {"consultation_id": cid}, "forbidden"),
    ]
    for peer, event, payload, code in cases:
        ack = await peer.call(event, payload)
        assert not ack["ok"] and ack["error"]["code"] == code, (event, payload, ack)

    # Nothing changed: the offer still rings, the urgency is as requested.
    status = (await clinician.call("pairing.status", {"consultation_id": cid}))["status"]
    assert status["state"] == "offered" and status["urgency"] == "urgent"
    assert status["offers"][0]["id"] == ring["offer"]["id"]


async def test_raising_urgency_from_the_requester_shortens_the_ring(live: Live, connect: Connect) -> None:
    clinician = await connect("clinician")
    specialist = await available(connect, "cardiologist")
    cid = await request(live, "clinician", "routine")
    ring = await specialist.next("pairing.offer", 20)
    raised = await clinician.call("pairing.raise", {"consultation_id": cid, "urgency": "emergency"})
    assert raised["ok"] and raised["status"]["urgency"] == "emergency"
    [offer] = raised["status"]["offers"]
    assert offer["id"] == ring["offer"]["id"] and offer["deadline_at"] < ring["offer"]["deadline_at"]


async def test_metrics_are_served_in_prometheus_format(live: Live, connect: Connect) -> None:
    await available(connect, "cardiologist")
    cid = await request(live, "clinician")
    status, _ = await live.api("POST", f"/api/v1/consultations/{cid}/accept", await live.token("cardiologist"))
    assert status == 200
    async with aiohttp.ClientSession() as http:
        async with http.get(live.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = await response.text()
    assert 'teleconsult_pairing_offers_total{urgency="urgent"} 1.0' in body
    assert "teleconsult_connections 1.0" in body
    assert 'teleconsult_pairing_seconds_count{urgency="urgent"} 1.0' in body
    assert 'teleconsult_pairing_accepts_total{urgency="urgent"} 1.0' in body


async def test_metrics_token_is_required_when_set(sqlite_settings: Settings, aiohttp_client: Any) -> None:
    client = await aiohttp_client(build_app(sqlite_settings.model_copy(update={"metrics_token": "scrape-me-0123"})))
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123"})
    assert ok.status == 200 and "teleconsult_pairing_offers" in await ok.text()
