"""The room's monitor and vitals widgets (static/js/monitor.js, vitals.js) in Chromium, fed directly.

Frames from MIT-BIH record 100 go to a WaveformMonitor out of order, with a duplicate and a missing frame;
the canvas is read back to check that the gap stays blank until its frame arrives. Freezing keeps receiving.
The vitals panel is checked for alarms, per-viewer limits, and entry validation before anything is sent.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import wfdb
from playwright.async_api import Browser, Page

from teleconsult.domain.waveform import FrameHeader, SignalScale, encode_frame, rate_to_mhz
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RECORD = Path(__file__).resolve().parents[1] / "data" / "physionet" / "100"
FRAME = 72  # 200 ms at 360 Hz

SETUP_MONITOR = """async ([stream, frames]) => {
  const { WaveformMonitor } = await import("/static/js/monitor.js");
  const { decodeFrame } = await import("/static/js/waveform.js");
  const { MONITOR_ENGLISH } = await import("/static/js/room-monitor.js");
  const { interpolate } = await import("/static/js/common.js");
  const box = document.createElement("div");
  box.id = "monitor";
  box.style.width = "800px";
  document.body.prepend(box);
  window.monitor = new WaveformMonitor(box, { t: (k, p) => interpolate(MONITOR_ENGLISH[k] || k, p) });
  window.monitor.setStreams([stream]);
  window.frames = frames.map((b64) => decodeFrame(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
}"""

# How many columns in the device-pixel range of samples [a, b] hold a dark (trace) pixel.
TRACE_COLUMNS = """([a, b]) => {
  const canvas = document.querySelector("#monitor canvas");
  const ctx = canvas.getContext("2d");
  const x0 = window.monitor.columnOf(1, a);
  const x1 = window.monitor.columnOf(1, b);
  if (x0 === null || x1 === null || x1 <= x0) return null;
  const image = ctx.getImageData(x0, 0, x1 - x0 + 1, canvas.height).data;
  const width = x1 - x0 + 1;
  let columns = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < canvas.height; y++) {
      const i = (y * width + x) * 4;
      if (image[i] + image[i + 1] + image[i + 2] < 200) { columns += 1; break; }
    }
  }
  return { columns, width };
}"""


@pytest.fixture(scope="module")
def widget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("monitor-js"))
    yield running
    stop_server(running)


def _stream_and_frames(count: int) -> tuple[dict, list[str]]:
    record = wfdb.rdrecord(str(RECORD), physical=False)
    d_signal = record.d_signal.astype(np.int64)
    scales = tuple(
        SignalScale(float(g), int(b), str(u))
        for g, b, u in zip(record.adc_gain, record.baseline, record.units, strict=True)
    )
    frames = []
    for seq in range(count):
        header = FrameHeader(1, seq, seq * FRAME, rate_to_mhz(record.fs), FRAME, scales)
        frames.append(base64.b64encode(encode_frame(header, d_signal[seq * FRAME : (seq + 1) * FRAME])).decode())
    stream = {
        "id": 1,
        "consultation_id": 1,
        "label": "MIT-BIH 100",
        "sample_rate": float(record.fs),
        "started_at": "2026-11-22T01:00:00Z",
        "active": True,
        "next_sample": 0,
        "signals": [
            {"name": n, "label": n, "kind": "ecg", "units": s.units, "gain": s.gain, "baseline": s.baseline}
            for n, s in zip(record.sig_name, scales, strict=True)
        ],
    }
    return stream, frames


async def _page(browser: Browser, server: Server) -> Page:
    page = await browser.new_page(viewport={"width": 1000, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/login")
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def test_frames_land_by_sample_index_and_a_missing_frame_stays_blank_until_it_comes(
    browser: Browser, widget_server: Server
) -> None:
    stream, frames = _stream_and_frames(30)
    page = await _page(browser, widget_server)
    await page.evaluate(SETUP_MONITOR, [stream, frames])
    # The last minute from the store, without frame 10; then live frames out of order, one twice.
    await page.evaluate("() => frames.slice(0, 25).forEach((f, i) => { if (i !== 10) monitor.backfill(f); })")
    await page.evaluate("() => [28, 25, 27, 26, 26, 29].forEach((i) => monitor.pushFrame(frames[i]))")
    monitor = page.locator("#monitor")
    assert await monitor.get_attribute("data-frames-received") == "6"
    assert await monitor.get_attribute("data-frames-backfilled") == "24"
    await page.wait_for_function(f"() => monitor.stats()[1].drawnTo >= {25 * FRAME}")
    stats = (await page.evaluate("() => monitor.stats()"))["1"]
    assert stats["latestSample"] == 30 * FRAME - 1
    assert stats["framesReceived"] == 6

    gap = await page.evaluate(TRACE_COLUMNS, [10 * FRAME + 2, 11 * FRAME - 3])
    data = await page.evaluate(TRACE_COLUMNS, [5 * FRAME + 2, 6 * FRAME - 3])
    assert gap is not None and data is not None
    assert gap["columns"] == 0, "the missing frame's stretch must stay blank"
    assert data["columns"] == data["width"], "every column with samples carries the trace"

    await page.evaluate("() => monitor.backfill(frames[10])")
    await page.wait_for_function(
        "() => { const s = monitor.stats()[1]; return s.framesBackfilled === 25; }", polling="raf"
    )
    await page.wait_for_timeout(100)  # the next animation frame repaints the filled columns
    filled = await page.evaluate(TRACE_COLUMNS, [10 * FRAME + 2, 11 * FRAME - 3])
    assert filled["columns"] == filled["width"]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_freeze_stops_drawing_but_not_receiving_and_unfreeze_shows_the_present(
    browser: Browser, widget_server: Server
) -> None:
    stream, frames = _stream_and_frames(60)
    page = await _page(browser, widget_server)
    await page.evaluate(SETUP_MONITOR, [stream, frames])
    await page.evaluate("() => frames.slice(0, 20).forEach((f) => monitor.pushFrame(f))")
    await page.wait_for_function("() => monitor.stats()[1].drawnTo > 0")
    await page.click("#monitor .monitor-freeze")
    assert await page.get_attribute("#monitor .monitor-freeze", "aria-pressed") == "true"
    frozen_at = (await page.evaluate("() => monitor.stats()"))["1"]["drawnTo"]
    await page.evaluate("() => frames.slice(20).forEach((f) => monitor.pushFrame(f))")
    await page.wait_for_timeout(500)
    stats = (await page.evaluate("() => monitor.stats()"))["1"]
    assert stats["drawnTo"] == frozen_at
    assert stats["framesReceived"] == 60
    assert await page.get_attribute("#monitor", "data-frames-received") == "60"
    # A gain change while frozen redraws the frozen strip, still without moving on.
    await page.select_option("#monitor .monitor-gain", "20")
    assert (await page.evaluate("() => monitor.stats()"))["1"]["drawnTo"] == frozen_at

    await page.evaluate("() => monitor.setHeartRate(1, 72.4)")
    assert await page.get_attribute("#monitor .monitor-stream", "data-heart-rate") == "72"
    assert await page.text_content("#monitor .monitor-hr-value") == "72"

    await page.click("#monitor .monitor-freeze")
    # Back to the present: within the display delay of the newest sample, not where it stopped.
    await page.wait_for_function(f"() => monitor.stats()[1].drawnTo > {60 * FRAME} - 360")
    assert page.errors == []  # type: ignore[attr-defined]


SETUP_VITALS = """async () => {
  const { VitalsPanel } = await import("/static/js/vitals.js");
  const { MONITOR_ENGLISH } = await import("/static/js/room-monitor.js");
  const { interpolate } = await import("/static/js/common.js");
  let box = document.getElementById("vitals");
  if (box) box.remove();
  box = document.createElement("div");
  box.id = "vitals";
  document.body.prepend(box);
  window.submitted = [];
  window.answer = { ok: false, error: { code: "invalid", message: "refused by the server" } };
  window.panel = new VitalsPanel(box, {
    t: (k, p) => interpolate(MONITOR_ENGLISH[k] || k, p),
    storageKey: "tc-vital-limits-test",
    onSubmit: async (reading) => { submitted.push(reading); return window.answer; },
  });
}"""


def _vital(vid: int, kind: str, value: float, value2: float | None = None, at: str = "2026-11-22T01:00:00Z") -> dict:
    return {
        "id": vid,
        "consultation_id": 1,
        "kind": kind,
        "value": value,
        "value2": value2,
        "unit": {"hr": "/min", "spo2": "%", "bp": "mm[Hg]", "rr": "/min", "temp": "Cel"}[kind],
        "observed_at": at,
        "source": "device",
        "recorded_by_name": "Gateway",
        "client_id": f"client{vid:04d}",
    }


async def _tile(page: Page, kind: str) -> dict:
    return await page.evaluate(
        """(kind) => { const t = document.querySelector(`#vitals [data-kind="${kind}"]`);
        return { value: t.querySelector(".vital-value").textContent, alarm: t.classList.contains("alarm"),
                 text: t.querySelector(".vital-alarm").textContent }; }""",
        kind,
    )


async def test_vital_tiles_alarm_outside_the_viewers_limits_which_persist(
    browser: Browser, widget_server: Server
) -> None:
    page = await _page(browser, widget_server)
    await page.evaluate(SETUP_VITALS)
    await page.evaluate(
        "(list) => panel.setVitals(list)",
        [
            _vital(1, "hr", 130),
            _vital(2, "bp", 120, 80),
            _vital(3, "temp", 37.5),
            _vital(4, "hr", 80, at="2026-11-22T00:30:00Z"),  # newer id, older reading: not the latest
        ],
    )
    hr = await _tile(page, "hr")
    assert hr["value"] == "130" and hr["alarm"] and "120" in hr["text"]
    assert not (await _tile(page, "bp"))["alarm"]
    assert (await _tile(page, "bp"))["value"] == "120/80"
    assert (await _tile(page, "temp"))["value"] == "37.5"
    await page.evaluate("(v) => panel.addVital(v)", {**_vital(1, "hr", 40), "observed_at": "2026-11-22T02:00:00Z"})
    assert (await _tile(page, "hr"))["value"] == "130", "a reading already shown (same id) is ignored"
    await page.evaluate("(v) => panel.addVital(v)", _vital(5, "bp", 95, 45, at="2026-11-22T02:00:00Z"))
    bp = await _tile(page, "bp")
    assert bp["alarm"] and "Diastolic" in bp["text"] and "Systolic" not in bp["text"]
    await page.evaluate("() => panel.setDerivedHeartRate(44)")
    assert (await _tile(page, "hr_ecg"))["alarm"]

    # This viewer raises the HR limit: the alarm goes, and stays gone on the next page load.
    await page.click("#vitals .vitals-limits summary")
    await page.fill("#vitals input[name=hr-high]", "140")
    await page.click("#vitals .vitals-limits-form button[type=submit]")
    assert not (await _tile(page, "hr"))["alarm"]
    await page.evaluate(SETUP_VITALS)
    await page.evaluate("(list) => panel.setVitals(list)", [_vital(1, "hr", 130)])
    assert not (await _tile(page, "hr"))["alarm"]
    await page.click("#vitals .vitals-limits summary")
    await page.fill("#vitals input[name=hr-high]", "90")
    await page.fill("#vitals input[name=hr-low]", "100")
    await page.click("#vitals .vitals-limits-form button[type=submit]")
    assert await page.is_visible("#vitals .limits-error")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_manual_entry_is_checked_before_sending_and_shows_the_servers_refusal(
    browser: Browser, widget_server: Server
) -> None:
    page = await _page(browser, widget_server)
    await page.evaluate(SETUP_VITALS)

    async def submit(kind: str, value: str, value2: str = "") -> str:
        await page.select_option("#vitals .vitals-kind", kind)
        await page.fill("#vitals .vitals-value", value)
        if kind == "bp":
            await page.fill("#vitals .vitals-value2", value2)
        await page.click("#vitals .vitals-submit")
        error = page.locator("#vitals .vitals-form-error")
        return (await error.text_content() or "") if await error.is_visible() else ""

    assert "between 20 and 300" in await submit("hr", "500")
    assert "whole number" in await submit("spo2", "97.5")
    assert "one decimal" in await submit("temp", "37.55")
    assert "lower than the systolic" in await submit("bp", "120", "130")
    assert "number" in await submit("rr", "abc")
    assert await page.evaluate("() => submitted.length") == 0

    assert await submit("temp", "37,5") == "refused by the server"  # a decimal comma is fine
    assert await page.evaluate("() => submitted") == [{"kind": "temp", "value": 37.5, "value2": None}]
    await page.evaluate("() => { window.answer = { ok: true, vital: null, queued: true }; }")
    assert await submit("bp", "135", "85") == ""
    assert (await page.evaluate("() => submitted"))[-1] == {"kind": "bp", "value": 135, "value2": 85}
    assert await page.input_value("#vitals .vitals-value") == ""
    assert page.errors == []  # type: ignore[attr-defined]
