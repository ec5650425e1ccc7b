"""The read-only FHIR endpoints over real HTTP and the `teleconsult fhir export` command: who gets the record,
in what form, and what the others get instead."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient
from sqlalchemy import select

from teleconsult.clock import FakeClock
from teleconsult.domain.fhir import CCCD_SYSTEM
from teleconsult.services import Services
from teleconsult.settings import Settings
from teleconsult.storage.models import AuditEventRow, UserRow
from tests.conftest import MakeServices
from tests.service.stored_record import Recording, physionet, store_stream, store_vitals
from tests.transport.conftest import Live, open_consultation
from tests.transport.test_cli import one_line_error, run, seeded  # noqa: F401  (seeded is a fixture)
from tests.transport.test_http import browser_login

GIANG_CCCD = "010190001234"  # demo patient registered by the clinician's commune station
STARTED = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


@dataclass
class Case:
    patient_id: int
    consultation_id: int
    vital_ids: list[int]
    stream_id: int
    ecg: Recording


async def user_id(services: Services, username: str) -> int:
    async with services.db.transaction() as tx:
        return int((await tx.execute(select(UserRow.id).where(UserRow.username == username))).scalar_one())


async def add_signals(services: Services, patient_id: int, consultation_id: int | None) -> tuple[list[int], int]:
    clinician = await user_id(services, "clinician")
    vital_ids = await store_vitals(
        services, patient_id=patient_id, recorded_by=clinician, at=STARTED, consultation_id=consultation_id
    )
    stream_id = await store_stream(
        services,
        physionet("100", sampto=80 * 360),
        patient_id=patient_id,
        source_user_id=clinician,
        started_at=STARTED,
        consultation_id=consultation_id,
    )
    return vital_ids, stream_id


@pytest.fixture
async def case(live: Live) -> Case:
    consultation_id = await open_consultation(live)
    patient_id = await live.services.fhir.patient_id_by_cccd(GIANG_CCCD)
    vital_ids, stream_id = await add_signals(live.services, patient_id, consultation_id)
    return Case(patient_id, consultation_id, vital_ids, stream_id, physionet("100", sampto=80 * 360))


async def get(live: Live, path: str, token: str | None = None) -> tuple[int, str, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as http, http.get(f"{live.url}{path}", headers=headers) as resp:
        return resp.status, resp.content_type, json.loads(await resp.read()), resp.headers


def ecg_samples(bundle: dict[str, Any], stream_id: int, n_signals: int) -> np.ndarray:
    pieces = [e["resource"] for e in bundle["entry"] if e["resource"]["id"].startswith(f"ecg-{stream_id}-")]
    return np.stack(
        [
            np.concatenate([[int(v) for v in p["component"][i]["valueSampledData"]["data"].split()] for p in pieces])
            for i in range(n_signals)
        ],
        axis=1,
    )


async def test_everything_gives_the_record_to_the_clinician(live: Live, case: Case) -> None:
    token = await live.token("clinician")
    status, content_type, body, headers = await get(live, f"/fhir/Patient/{case.patient_id}/$everything", token)

    assert status == 200 and content_type == "application/fhir+json"
    assert headers["Cache-Control"] == "no-store"
    bundle = Bundle.model_validate(body)
    assert bundle.type == "searchset"
    kinds = [e["resource"]["resourceType"] for e in body["entry"]]
    assert kinds == ["Patient", "Encounter"] + ["Observation"] * 7  # 5 vitals, 80 s of ECG in 2 pieces
    assert body["entry"][0]["fullUrl"] == f"{live.url}/fhir/Patient/{case.patient_id}"
    assert np.array_equal(ecg_samples(body, case.stream_id, 2), case.ecg.samples)
    async with live.services.db.transaction() as tx:
        [audit] = (await tx.execute(select(AuditEventRow).where(AuditEventRow.action == "fhir.export"))).scalars()
    assert (audit.patient_id, audit.outcome, audit.source) == (case.patient_id, "success", "127.0.0.1")


async def test_the_browser_session_works_too_and_single_resources_are_served(live: Live, case: Case) -> None:
    http = await browser_login(live, "cardiologist")  # accepted the consultation: may read the record
    try:
        for path, model in [
            (f"/fhir/Patient/{case.patient_id}", FhirPatient),
            (f"/fhir/Encounter/{case.consultation_id}", Encounter),
            (f"/fhir/Observation/vital-{case.vital_ids[2]}", Observation),
            (f"/fhir/Observation/ecg-{case.stream_id}-1", Observation),
        ]:
            async with http.get(f"{live.url}{path}") as resp:
                assert resp.status == 200 and resp.content_type == "application/fhir+json", path
                resource = model.model_validate(json.loads(await resp.read()))
        async with http.get(f"{live.url}/fhir/Patient/{case.patient_id}") as resp:
            patient = await resp.json(content_type=None)
    finally:
        await http.close()
    assert resource.component[0].valueSampledData.dimensions == 1
    assert {"system": CCCD_SYSTEM, "value": GIANG_CCCD}.items() <= patient["identifier"][0].items()


async def test_a_clinician_of_another_facility_is_forbidden(live: Live, case: Case) -> None:
    token = await live.token("clinician2")
    for path in (
        f"/fhir/Patient/{case.patient_id}/$everything",
        f"/fhir/Patient/{case.patient_id}",
        f"/fhir/Observation/ecg-{case.stream_id}-0",
    ):
        status, content_type, body, _ = await get(live, path, token)
        assert (status, content_type) == (403, "application/fhir+json"), path
        outcome = OperationOutcome.model_validate(body)
        assert outcome.issue[0].code == "forbidden"
        assert "Giàng" not in json.dumps(body, ensure_ascii=False)
    async with live.services.db.transaction() as tx:
        denied = (await tx.execute(select(AuditEventRow).where(AuditEventRow.outcome == "denied"))).scalars().all()
    assert [(a.action, a.patient_id) for a in denied] == [
        ("fhir.export", case.patient_id),
        ("fhir.read", case.patient_id),
        ("fhir.read", case.patient_id),
    ]


async def test_anonymous_callers_are_asked_to_log_in(live: Live, case: Case) -> None:
    status, content_type, body, headers = await get(live, f"/fhir/Patient/{case.patient_id}/$everything")
    assert (status, content_type) == (401, "application/fhir+json")
    assert OperationOutcome.model_validate(body).issue[0].code == "login"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body, _ = await get(live, f"/fhir/Patient/{case.patient_id}", token="not-a-real-token")
    assert status == 401 and body["resourceType"] == "OperationOutcome"


async def test_unknown_resources_are_not_found(live: Live) -> None:
    token = await live.token("admin")  # may read every record: nothing is hidden behind a 403 here
    for path in (
        "/fhir/Patient/99999/$everything",
        "/fhir/Patient/99999/%24everything",
        "/fhir/Patient/99999",
        "/fhir/Patient/abc",
        "/fhir/Patient/-1",
        "/fhir/Encounter/99999",
        "/fhir/Observation/vital-99999",
        "/fhir/Observation/nothing",
        "/fhir/Condition/1",
        "/fhir/metadata",
    ):
        status, content_type, body, _ = await get(live, path, token)
        assert (status, content_type) == (404, "application/fhir+json"), path
        assert OperationOutcome.model_validate(body).issue[0].code == "not-found"


async def test_writes_are_not_offered(live: Live, case: Case) -> None:
    token = await live.token("admin")
    async with (
        ClientSession() as http,
        http.put(
            f"{live.url}/fhir/Patient/{case.patient_id}", json={}, headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        assert resp.status == 405


# --- the command line ----------------------------------------------------------------------------------------


@pytest.fixture
async def cli_services(seeded: Path, make_services: MakeServices) -> Services:  # noqa: F811
    return await make_services(Settings(database_url=f"sqlite+aiosqlite:///{seeded}/cli.sqlite3"), FakeClock())


async def test_fhir_export_prints_the_bundle(seeded: Path, cli_services: Services, tmp_path: Path) -> None:  # noqa: F811
    patient_id = await cli_services.fhir.patient_id_by_cccd(GIANG_CCCD)
    _, stream_id = await add_signals(cli_services, patient_id, None)

    done = run(seeded, "fhir", "export", "--patient", GIANG_CCCD)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    bundle = Bundle.model_validate(body)
    assert bundle.type == "collection"
    assert body["entry"][0]["resource"]["name"][0]["text"] == "Giàng Thị Mỷ"
    assert np.array_equal(ecg_samples(body, stream_id, 2), physionet("100", sampto=80 * 360).samples)

    written = run(seeded, "fhir", "export", "--patient", GIANG_CCCD, "--output", str(tmp_path / "b.json"))
    assert written.returncode == 0 and "b.json" in written.stdout
    from_file = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert {**from_file, "timestamp": None} == {**body, "timestamp": None}  # the same record, exported later
    async with cli_services.db.transaction() as tx:
        exports = (await tx.execute(select(AuditEventRow).where(AuditEventRow.action == "fhir.export"))).scalars()
        assert [(a.actor_user_id, a.source, a.patient_id) for a in exports] == [(None, "cli", patient_id)] * 2


@pytest.mark.parametrize(("cccd", "expected"), [("999999999999", "no patient with citizen ID"), ("12345", "12 digits")])
def test_fhir_export_of_an_unknown_patient_is_one_line(seeded: Path, cccd: str, expected: str) -> None:  # noqa: F811
    result = run(seeded, "fhir", "export", "--patient", cccd)
    assert result.returncode == 1 and result.stdout == ""
    assert expected in one_line_error(result)
