"""From the bedside to the specialist's screen to the record: `teleconsult device play` of MIT-BIH record
100 into a consultation, a specialist's room page in Chromium drawing it live, and the store holding the
record's samples exactly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import wfdb
from playwright.async_api import Browser

from tests.e2e.conftest import ROOT, Server, login, start_server, stop_server
from tests.e2e.test_device_gateway import DATA, consultation_with_token, stored_samples

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[Server]:
    # The gateway replays 30 minutes unpaced; allow it more frames per second than a live monitor sends.
    running = start_server(
        tmp_path, {"TELECONSULT_FRAMES_PER_SECOND": "5000", "TELECONSULT_DERIVED_HR_INTERVAL_S": "1"}
    )
    yield running
    stop_server(running)


async def test_a_played_record_is_drawn_live_for_the_specialist_and_stored_exactly(
    browser: Browser, fast_server: Server, tmp_path: Path
) -> None:
    server = fast_server
    record = wfdb.rdrecord(str(DATA / "100"), physical=False)
    cid, token = consultation_with_token(server)
    ctx, specialist = await login(browser, server, "cardiologist")
    await specialist.goto(f"{server.url}/consultations/{cid}/room")
    await specialist.wait_for_function("() => document.querySelector('#monitor')?.dataset.backfills >= 1")

    frames = -(-len(record.d_signal) // 360)  # one-second frames
    gateway = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "teleconsult.cli",
        "device",
        "play",
        str(DATA / "100"),
        "--server",
        server.url,
        "--consultation",
        str(cid),
        f"--token={token}",
        "--speed",
        "0",
        "--frame-ms",
        "1000",
        "--outbox",
        str(tmp_path / "outbox.sqlite3"),
        "--vitals-every",
        "2",
        "--simulate-vitals",
        env=server.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(gateway.communicate(), 180)
    assert gateway.returncode == 0, output.decode()

    monitor = specialist.locator("#monitor")
    await specialist.wait_for_function(
        f"() => Number(document.querySelector('#monitor').dataset.framesReceived) === {frames}", timeout=30_000
    )
    stream = specialist.locator("section.monitor-stream")
    assert await stream.count() == 1
    labels = await specialist.locator("section.monitor-stream").inner_text()
    assert "MLII" in labels and "V5" in labels
    # The heart rate derived from the ECG and the device's readings reached the tiles.
    await specialist.wait_for_function(
        "() => document.querySelector('section.monitor-stream')?.dataset.heartRate > 0", timeout=20_000
    )
    derived = float(await stream.get_attribute("data-heart-rate") or 0)
    assert 50 <= derived <= 110, derived  # record 100: sinus rhythm around 75 per minute
    spo2 = specialist.locator(".vital-tile[data-kind=spo2] .vital-value")
    await spo2.wait_for()
    assert 90 <= float((await spo2.inner_text()).strip()) <= 100
    assert await monitor.get_attribute("data-frames-received") == str(frames)
    await ctx.close()

    samples = await stored_samples(server)
    assert np.array_equal(samples, record.d_signal)
