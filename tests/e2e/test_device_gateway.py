"""The bedside gateway as a real process against the real server process: a killed server and a killed
gateway in the middle of a stream, and the store still ends with every sample of the record exactly once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import wfdb

from teleconsult.seed import DEMO_PASSWORD
from teleconsult.storage import waveforms as store
from teleconsult.storage.db import Database, create_engine
from teleconsult.storage.models import WaveformStreamRow
from tests.e2e.conftest import ROOT, Server, start_again, stop_server
from tests.e2e.test_consultation_flow import api

pytestmark = [pytest.mark.e2e]

DATA = ROOT / "tests" / "data" / "physionet"


def consultation_with_token(server: Server) -> tuple[int, str]:
    """An accepted consultation of the demo clinician, and a device token issued for that clinician."""
    clin = api(server, "POST", "/api/v1/auth/token", body={"username": "clinician", "password": DEMO_PASSWORD})
    spec = api(server, "POST", "/api/v1/auth/token", body={"username": "cardiologist", "password": DEMO_PASSWORD})
    patient_id = api(server, "GET", "/api/v1/patients?q=giang", clin["token"])["patients"][0]["id"]
    cid = api(
        server,
        "POST",
        "/api/v1/consultations",
        clin["token"],
        {"patient_id": patient_id, "specialty": "cardiology", "urgency": "urgent", "summary": "Hồi hộp, ngất."},
    )["id"]
    api(server, "POST", f"/api/v1/consultations/{cid}/accept", spec["token"])
    issued = server.cli("device", "token", "clinician", "--days", "1")
    assert issued.returncode == 0, issued.stderr
    return int(cid), issued.stdout.strip()


def gateway(server: Server, record: str, cid: int, token: str, outbox: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "teleconsult.cli",
            "device",
            "play",
            str(DATA / record),
            "--server",
            server.url,
            "--consultation",
            str(cid),
            f"--token={token}",
            "--outbox",
            str(outbox),
            "--vitals-every",
            "0",
            *extra,
        ],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def stream_progress(server: Server) -> tuple[int, int]:
    """(streams, frames committed) straight from the database file."""
    path = server.env["TELECONSULT_DATABASE_URL"].split("///", 1)[1]
    with sqlite3.connect(path, timeout=30) as db:
        row = db.execute("SELECT COUNT(*), COALESCE(SUM(next_seq), 0) FROM waveform_streams").fetchone()
    return int(row[0]), int(row[1])


def wait_for_frames(server: Server, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stream_progress(server)[1] < at_least:
        assert time.monotonic() < deadline, f"stream stuck at {stream_progress(server)}"
        time.sleep(0.1)


async def stored_samples(server: Server) -> np.ndarray:
    db = Database(create_engine(server.env["TELECONSULT_DATABASE_URL"]))
    try:
        async with db.transaction() as tx:
            [row] = (await tx.execute(WaveformStreamRow.__table__.select())).all()
            stream = await tx.get(WaveformStreamRow, row.id)
            assert stream is not None
            return await store.read_samples(tx, stream, 0, stream.next_sample)
    finally:
        await db.dispose()


def test_killed_server_and_killed_gateway_lose_nothing_and_store_nothing_twice(server: Server, tmp_path: Path) -> None:
    record = wfdb.rdrecord(str(DATA / "s0010_re"), physical=False)  # 15 leads, 1000 Hz, 38.4 s: 192 frames
    cid, token = consultation_with_token(server)
    outbox = tmp_path / "outbox.sqlite3"
    # Twice real time: about twenty seconds of streaming. The frames produced while the server is down are
    # flushed at once when it is back, so the stream must outlast a slow restart on a loaded machine and
    # still be mid-way when the gateway is killed.
    first = gateway(server, "s0010_re", cid, token, outbox, "--speed", "2")
    restarted: Server | None = None
    try:
        wait_for_frames(server, 30)
        server.process.send_signal(signal.SIGKILL)  # as a crash would: no shutdown handlers run
        server.process.wait(10)
        time.sleep(1.0)  # the gateway keeps producing into its outbox meanwhile
        restarted = start_again(server)
        wait_for_frames(restarted, 90)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        frames_before_restart = stream_progress(restarted)[1]
        assert 90 <= frames_before_restart < 192
        second = gateway(restarted, "s0010_re", cid, token, outbox, "--speed", "0")
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        assert stream_progress(restarted) == (1, 192), "one stream, every frame once"
        wrong = gateway(restarted, "s0010_re", cid, "not-a-token", tmp_path / "other.sqlite3")
        output, _ = wrong.communicate(timeout=60)
        assert wrong.returncode == 1 and "Traceback" not in output, output
        samples = asyncio.run(stored_samples(restarted))
    finally:
        if first.poll() is None:
            first.kill()
        if restarted is not None:
            stop_server(restarted)  # the fixture stops the first process, already dead
    assert samples.shape == record.d_signal.shape
    assert np.array_equal(samples, record.d_signal)


def test_the_gateway_refuses_what_it_cannot_play_in_one_line(tmp_path: Path) -> None:
    # Refused before any connection is made: no server needed.
    offline = Server("http://127.0.0.1:9", dict(__import__("os").environ), None, tmp_path / "none.log")  # type: ignore[arg-type]
    for args, expected in (
        (["no-such-record"], "no WFDB record"),
        (["100", "--leads", "V9"], "no lead"),
        (["100", "--frame-ms", "5"], "--frame-ms"),
        (["100"], "cannot connect"),
    ):
        record, *extra = args
        done = gateway(offline, record, 1, "some-token", tmp_path / "o.sqlite3", *extra)
        output, _ = done.communicate(timeout=60)
        assert done.returncode == 1, output
        assert expected in output.strip().splitlines()[-1] and "Traceback" not in output
