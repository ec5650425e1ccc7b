"""Join time: from opening the consultation room in two real Chromium pages to both seeing the other's video.

For each run the timed window starts when both pages are told to navigate to the room (concurrently) and ends
when BOTH pages have a remote video playing (``video.remote-video`` with videoWidth > 0, readyState >= 2, not
paused). It therefore includes the page loads (HTML, CSS, JS modules), the socket.io connection, the room
join, the offer/answer, ICE, DTLS and the first decoded frame. It is measured twice: with time.perf_counter in
this process, and inside the pages (performance.now() of the first poll that sees the video playing,
bench/trace.js) converted to a common origin.

Two systems are measured in the same run, interleaved run by run, in the same browser:

- product: the real ``teleconsult serve`` process (migrated, seeded SQLite) and its room page. Each run uses
  a fresh consultation (created by the clinician and accepted by the cardiologist through the JSON API, outside
  the window). Both browser contexts log in once, through the login page, before the first run (not timed).
  Each context keeps one tab for all runs: a run navigates it from about:blank to the room and back, like a
  doctor opening the room from the tab they are in; the HTTP cache is warm as for a returning user.
  (--new-pages opens a new tab per run instead: Chromium then also starts its own per-tab UI renderer (a
  WebUI omnibox popup) on the same CPUs during the window, which made both systems 0.1-0.3 s slower here.)
- relay: bench/relay_peer.py, a bare python-socketio relay (no auth, no database) serving bench/peer_page/,
  plain RTCPeerConnection with the same socket.io-client build; same contexts/pages arrangement.

One warm-up run of each is made first and not counted. Exit status 0 whatever the figures (this is a
measurement); 1 when a run failed or the bench itself could not run.

    .venv/bin/python bench/join_time.py [--runs 7] [--warmup 1] [--json] [--no-trace] [--new-pages]
                                        [--verbose] [--dump FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, BrowserContext, Page, async_playwright  # noqa: E402

from teleconsult.seed import DEMO_PASSWORD  # noqa: E402
from tests.e2e.conftest import (  # noqa: E402
    CHROMIUM_FLAGS,
    Server,
    chromium_path,
    free_port,
    start_server,
    stop_server,
)

GOAL_S = 1.0
WAIT_MS = 20_000  # any single browser wait
API_TIMEOUT_S = 10
RUN_TIMEOUT_S = 45  # one run, both systems' waits included
SETTLE_S = 0.3  # after leaving a run's pages, before the next run

REMOTE_VIDEO_PLAYING = """() => [...document.querySelectorAll('video.remote-video')]
    .some(v => v.videoWidth > 0 && !v.paused && v.readyState >= 2)"""
TRACE_JS = (BENCH / "trace.js").read_text(encoding="utf-8")
COLLECT_TRACE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource').map(r => ({
    name: r.name, start: r.startTime, end: r.responseEnd, size: r.transferSize }));
  return {
    timeOrigin: performance.timeOrigin,
    marks: window.__bench ? window.__bench.marks : [],
    nav: nav ? { responseStart: nav.responseStart, responseEnd: nav.responseEnd,
                 domInteractive: nav.domInteractive, domContentLoaded: nav.domContentLoadedEventEnd,
                 load: nav.loadEventEnd } : null,
    resources,
  };
}"""


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=10, method="inclusive")[8]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "p90": p90(values),
        "max": max(values),
    }


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# ------------------------------------------------------------------------------------------------------------
# page traces (bench/trace.js) -> milestones in ms since the start of the timed window
# ------------------------------------------------------------------------------------------------------------

# (key, label) in the order of the call flow.
MILESTONES = [
    ("html_first_byte", "HTML first byte"),
    ("html_done", "HTML received"),
    ("dom_content_loaded", "DOMContentLoaded"),
    ("scripts_loaded", "JS modules fetched (last responseEnd)"),
    ("socket_created", "socket.io client created (module runs)"),
    ("camera_ready", "getUserMedia resolved"),
    ("ws_open", "websocket open"),
    ("sio_connected", "socket.io connected (40 received)"),
    ("join_sent", "join emitted"),
    ("join_ack", "join ack received"),
    ("pc_created", "RTCPeerConnection created"),
    ("local_description", "local offer/answer set"),
    ("remote_description", "remote offer/answer set"),
    ("ice_connected", "ICE connected"),
    ("pc_connected", "DTLS connected (connectionState)"),
    ("track", "remote video track (ontrack)"),
    ("first_frame", "first frame (requestVideoFrameCallback)"),
    ("video_ready", "remote video playing (in-page poll)"),
]


@dataclass
class PageTrace:
    """One page's milestones, in ms since the start of the timed window (None when not seen)."""

    at: dict[str, float | None]
    offered: bool
    join_rtt: float | None

    @classmethod
    def parse(cls, raw: dict[str, Any], t0_epoch_ms: float) -> PageTrace:
        shift = float(raw["timeOrigin"]) - t0_epoch_ms
        marks: list[tuple[str, float, Any]] = [(m[0], float(m[1]), m[2]) for m in raw.get("marks") or []]

        def first(name: str | Callable[[str, Any], bool]) -> float | None:
            for mark_name, ms, detail in marks:
                if (mark_name == name) if isinstance(name, str) else name(mark_name, detail):
                    return ms + shift
            return None

        join_sent = join_ack = None
        ack_id = None
        for mark_name, ms, detail in marks:
            text = detail or ""
            if join_sent is None and mark_name == "ws.out":
                match = re.match(r'^42(\d*)\["(room\.join|join)"', text)
                if match:
                    join_sent, ack_id = ms + shift, match.group(1)
            elif join_sent is not None and join_ack is None and mark_name == "ws.in" and ack_id:
                if text.startswith(f"43{ack_id}["):
                    join_ack = ms + shift
        nav = raw.get("nav") or {}
        scripts = [r["end"] for r in raw.get("resources") or [] if r["name"].split("?")[0].endswith(".js")]
        at: dict[str, float | None] = {
            "html_first_byte": nav.get("responseStart", 0) + shift if nav.get("responseStart") else None,
            "html_done": nav.get("responseEnd", 0) + shift if nav.get("responseEnd") else None,
            "dom_content_loaded": first("dom.contentLoaded"),
            "scripts_loaded": max(scripts) + shift if scripts else None,
            "socket_created": first("ws.create"),
            "camera_ready": first("gum.done"),
            "ws_open": first("ws.open"),
            "sio_connected": first(lambda n, d: n == "ws.in" and str(d or "").startswith("40")),
            "join_sent": join_sent,
            "join_ack": join_ack,
            "pc_created": first("pc.create"),
            "local_description": first(lambda n, d: n in ("pc.sld.offer", "pc.sld.answer")),
            "remote_description": first(lambda n, d: n in ("pc.srd.offer", "pc.srd.answer")),
            "ice_connected": first(lambda n, d: n in ("pc.ice.connected", "pc.ice.completed")),
            "pc_connected": first("pc.conn.connected"),
            "track": first("pc.track.video"),
            "first_frame": first("video.firstFrame"),
            "video_ready": first("video.ready"),
        }
        offered = any(name == "pc.sld.offer" for name, _, _ in marks)
        rtt = join_ack - join_sent if join_ack is not None and join_sent is not None else None
        return cls(at=at, offered=offered, join_rtt=rtt)


@dataclass
class Run:
    window_s: float  # perf_counter: both navigations started -> both remote videos playing
    in_page_s: float | None  # same window from the pages' own clocks (later page's video.ready)
    pages: list[PageTrace] = field(default_factory=list)  # [first joiner, second joiner] when traced
    raw: list[dict[str, Any]] = field(default_factory=list)  # what bench/trace.js collected, for --dump

    def ordered(self) -> list[PageTrace]:
        """First joiner, then second joiner (by join ack)."""
        return sorted(self.pages, key=lambda p: p.at["join_ack"] if p.at["join_ack"] is not None else 1e12)


# ------------------------------------------------------------------------------------------------------------
# the two systems
# ------------------------------------------------------------------------------------------------------------


def api(base: str, method: str, path: str, token: str | None = None, body: object = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


@dataclass
class Target:
    name: str
    contexts: tuple[BrowserContext, BrowserContext]
    pages: list[Page]  # one tab per context, reused by every run (unless --new-pages)
    next_urls: Callable[[int], Awaitable[tuple[str, str]]]  # run index -> room URL for each context


async def new_context(browser: Browser, trace: bool, console: list[str], tag: str) -> BrowserContext:
    context = await browser.new_context(locale="en-US", permissions=["camera", "microphone"])
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    if trace:
        await context.add_init_script(script=TRACE_JS)

    def on_console(msg: Any) -> None:
        if msg.type in ("warning", "error"):
            console.append(f"{tag}: {msg.text}")

    context.on("console", on_console)
    return context


async def tab(context: BrowserContext) -> Page:
    page = await context.new_page()
    await page.goto("about:blank")
    return page


async def login(context: BrowserContext, base: str, username: str) -> None:
    page = await context.new_page()
    try:
        await page.goto(f"{base}/login")
        await page.fill("#username", username)
        await page.fill("#password", DEMO_PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_url(f"{base}/dashboard")
    finally:
        await page.close()


async def product_target(browser: Browser, server: Server, trace: bool, console: list[str]) -> Target:
    base = server.url
    clin_token = (
        await asyncio.to_thread(
            api, base, "POST", "/api/v1/auth/token", body={"username": "clinician", "password": DEMO_PASSWORD}
        )
    )["token"]
    spec_token = (
        await asyncio.to_thread(
            api, base, "POST", "/api/v1/auth/token", body={"username": "cardiologist", "password": DEMO_PASSWORD}
        )
    )["token"]
    patients = (await asyncio.to_thread(api, base, "GET", "/api/v1/patients?q=giang", clin_token))["patients"]
    if not patients:
        raise BenchError("the demo patient 'giang' is missing from the seeded database")
    patient_id = patients[0]["id"]

    clinician = await new_context(browser, trace, console, "product/clinician")
    cardiologist = await new_context(browser, trace, console, "product/cardiologist")
    await login(clinician, base, "clinician")
    await login(cardiologist, base, "cardiologist")

    async def next_urls(run: int) -> tuple[str, str]:
        body = {"patient_id": patient_id, "specialty": "cardiology", "urgency": "urgent", "summary": f"bench {run}"}
        cid = (await asyncio.to_thread(api, base, "POST", "/api/v1/consultations", clin_token, body))["id"]
        await asyncio.to_thread(api, base, "POST", f"/api/v1/consultations/{cid}/accept", spec_token)
        url = f"{base}/consultations/{cid}/room"
        return url, url

    return Target("product", (clinician, cardiologist), [await tab(clinician), await tab(cardiologist)], next_urls)


@dataclass
class Relay:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def start_relay(tmp: Path) -> Relay:
    port = free_port()
    log = tmp / "relay.log"
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "relay_peer.py"), "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"relay exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return Relay(url, process, log)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise BenchError(f"relay did not answer /healthz: {log.read_text()}")


def stop_relay(relay: Relay) -> None:
    relay.process.terminate()
    try:
        relay.process.wait(10)
    except subprocess.TimeoutExpired:
        relay.process.kill()
        relay.process.wait(10)


async def relay_target(browser: Browser, relay: Relay, trace: bool, console: list[str]) -> Target:
    first = await new_context(browser, trace, console, "relay/a")
    second = await new_context(browser, trace, console, "relay/b")
    salt = os.urandom(4).hex()

    async def next_urls(run: int) -> tuple[str, str]:
        url = f"{relay.url}/?room=r{run}-{salt}"
        return url, url

    return Target("relay", (first, second), [await tab(first), await tab(second)], next_urls)


# ------------------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------------------


async def open_and_wait(page: Page, url: str) -> float:
    await page.goto(url, wait_until="commit", timeout=WAIT_MS)
    await page.wait_for_function(REMOTE_VIDEO_PLAYING, timeout=WAIT_MS, polling="raf")
    return time.perf_counter()


async def measure(target: Target, run: int, trace: bool, new_pages: bool) -> Run:
    urls = await target.next_urls(run)
    if new_pages or not target.pages:
        pages = [await ctx.new_page() for ctx in target.contexts]
    else:
        pages = target.pages
    try:
        t0_epoch_ms = time.time() * 1000.0
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(open_and_wait(page, url)) for page, url in zip(pages, urls, strict=True)]
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        window = max(done) - t0
        traces: list[PageTrace] = []
        raws: list[dict[str, Any]] = []
        in_page = None
        if trace:
            raws = [{**await page.evaluate(COLLECT_TRACE), "t0EpochMs": t0_epoch_ms} for page in pages]
            traces = [PageTrace.parse(raw, t0_epoch_ms) for raw in raws]
            ready = [t.at["video_ready"] for t in traces]
            if all(r is not None for r in ready):
                in_page = max(r for r in ready if r is not None) / 1000.0
        return Run(window_s=window, in_page_s=in_page, pages=traces, raw=raws if trace else [])
    finally:
        for page in pages:
            if new_pages:
                await page.close()
            else:  # leave the room: the page hangs up (socket closed, tracks stopped) before the next run
                await page.goto("about:blank", timeout=WAIT_MS)
        await asyncio.sleep(SETTLE_S)


# ------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:7.0f}"


def print_runs(results: dict[str, list[Run]], failures: dict[str, list[str]]) -> None:
    print("\nPer run, seconds (perf_counter window / in-page window):")
    names = list(results)
    count = max(len(results[n]) + len(failures[n]) for n in names)
    print("  run  " + "".join(f"{n:>24}" for n in names))
    for i in range(count):
        cells = []
        for n in names:
            if i < len(results[n]):
                r = results[n][i]
                cells.append(f"{fmt_s(r.window_s):>13} / {fmt_s(r.in_page_s):>8}")
            else:
                cells.append(f"{'failed':>24}")
        print(f"  {i + 1:>3}  " + "".join(f"{c:>24}" for c in cells))


def print_summary(stats: dict[str, dict[str, float]], in_page: dict[str, dict[str, float] | None]) -> str:
    product, relay = stats["product"], stats["relay"]
    verdict = "PASS" if product["median"] <= GOAL_S else "MISS"
    print("\nJoin -> both remote videos playing, two Chromium pages on loopback, page loads included (seconds):")
    print(f"  {'':22}{'product':>10}{'bare relay':>12}{'ratio':>8}")
    for key in ("median", "min", "p90", "max"):
        print(f"  {key:22}{product[key]:>10.3f}{relay[key]:>12.3f}{product[key] / relay[key]:>8.2f}")
    for name in ("product", "relay"):
        s = in_page[name]
        if s:
            print(f"  in-page median {name:7}{s['median']:>10.3f}  (pages' own clocks, first poll seeing video play)")
    print(f"  goal: median <= {GOAL_S:.1f} s  ->  {verdict} (product median {product['median']:.3f} s)")
    return verdict


def breakdown(runs: list[Run]) -> dict[str, list[float | None]]:
    """Median milestone times (ms from window start): [first joiner, second joiner (offerer)]."""
    out: dict[str, list[float | None]] = {}
    ordered = [r.ordered() for r in runs if len(r.pages) == 2]
    for key, _ in MILESTONES:
        out[key] = [median_or_none([pages[i].at[key] for pages in ordered]) for i in (0, 1)]
    out["join_rtt"] = [median_or_none([pages[i].join_rtt for pages in ordered]) for i in (0, 1)]
    return out


def critical_path(runs: list[Run]) -> list[tuple[str, float | None]]:
    """Medians of the window's phases, each the moment the LATER of the two pages got there."""

    def later(pages: list[PageTrace], key: str) -> float | None:
        values = [p.at[key] for p in pages]
        return None if any(v is None for v in values) else max(v for v in values if v is not None)

    steps = [
        ("both pages' modules running", "socket_created"),
        ("both socket.io connected", "sio_connected"),
        ("both joined (2nd join ack)", "join_ack"),
        ("both descriptions applied", "remote_description"),
        ("both ICE connected", "ice_connected"),
        ("both DTLS connected", "pc_connected"),
        ("both first frame", "first_frame"),
        ("both playing (in-page poll)", "video_ready"),
    ]
    traced = [r.pages for r in runs if len(r.pages) == 2]
    return [(label, median_or_none([later(pages, key) for pages in traced])) for label, key in steps]


def print_breakdown(results: dict[str, list[Run]]) -> dict[str, Any]:
    product, relay = breakdown(results["product"]), breakdown(results["relay"])
    print("\nWhere the time goes: median ms since both navigations started")
    print("  (1st = first page to get its join ack; 2nd = the other, which makes the offer)")
    header = f"  {'milestone':42}{'product 1st':>12}{'product 2nd':>12}{'relay 1st':>11}{'relay 2nd':>11}"
    print(header)
    for key, label in [*MILESTONES, ("join_rtt", "join round trip (ack - emit), ms")]:
        p, r = product[key], relay[key]
        print(f"  {label:42}{fmt_ms(p[0]):>12}{fmt_ms(p[1]):>12}{fmt_ms(r[0]):>11}{fmt_ms(r[1]):>11}")

    product_path, relay_path = critical_path(results["product"]), critical_path(results["relay"])
    print("\nCritical path (median ms; each step = when the later page reached it; step = increment):")
    print(f"  {'step':34}{'product':>9}{'(+step)':>9}{'relay':>9}{'(+step)':>9}{'extra':>8}")
    prev_p = prev_r = 0.0
    for (label, pv), (_, rv) in zip(product_path, relay_path, strict=True):
        dp = None if pv is None else pv - prev_p
        dr = None if rv is None else rv - prev_r
        extra = None if dp is None or dr is None else dp - dr
        print(f"  {label:34}{fmt_ms(pv):>9}{fmt_ms(dp):>9}{fmt_ms(rv):>9}{fmt_ms(dr):>9}{fmt_ms(extra):>8}")
        prev_p = pv if pv is not None else prev_p
        prev_r = rv if rv is not None else prev_r
    return {
        "milestones_ms": {"product": product, "relay": relay},
        "critical_path_ms": {"product": dict(product_path), "relay": dict(relay_path)},
    }


# ------------------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, tmp: Path) -> int:
    try:
        chromium = chromium_path()
    except BaseException as exc:  # pytest.fail(...) outside pytest
        raise BenchError("Debian chromium is not installed; run `make setup`") from exc
    trace = not args.no_trace
    console: list[str] = []
    results: dict[str, list[Run]] = {"product": [], "relay": []}
    failures: dict[str, list[str]] = {"product": [], "relay": []}

    print(f"Starting teleconsult (migrate, seed, serve) and the bare relay in {tmp} ...", flush=True)
    product_tmp = tmp / "product"
    product_tmp.mkdir()
    server = await asyncio.to_thread(start_server, product_tmp)
    relay: Relay | None = None
    try:
        relay = await asyncio.to_thread(start_relay, tmp)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            try:
                targets = [
                    await product_target(browser, server, trace, console),
                    await relay_target(browser, relay, trace, console),
                ]
                print(
                    f"Chromium {browser.version}; {args.runs} runs of each after {args.warmup} warm-up, interleaved; "
                    f"logins done once per context before the runs (not timed); "
                    f"{'a new tab per run' if args.new_pages else 'one tab per context, reused'}; "
                    f"trace {'on' if trace else 'off'}.",
                    flush=True,
                )
                for i in range(-args.warmup, args.runs):
                    for target in targets:
                        label = "warm-up" if i < 0 else f"run {i + 1}/{args.runs}"
                        try:
                            run = await asyncio.wait_for(
                                measure(target, i + args.warmup, trace, args.new_pages), RUN_TIMEOUT_S
                            )
                        except Exception as exc:  # a run that never connected is a result too
                            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                            print(f"  {label:>12} {target.name:8} FAILED {message}", flush=True)
                            if i >= 0:
                                failures[target.name].append(message)
                            continue
                        print(
                            f"  {label:>12} {target.name:8} {run.window_s:.3f} s"
                            + (f"  (in-page {run.in_page_s:.3f} s)" if run.in_page_s is not None else ""),
                            flush=True,
                        )
                        if i >= 0:
                            results[target.name].append(run)
            finally:
                await browser.close()
    finally:
        if relay is not None:
            await asyncio.to_thread(stop_relay, relay)
        await asyncio.to_thread(stop_server, server)

    if not results["product"] or not results["relay"]:
        raise BenchError(f"no successful runs: {failures}")
    stats = {name: summary([r.window_s for r in runs]) for name, runs in results.items()}
    in_page: dict[str, dict[str, float] | None] = {}
    for name, runs in results.items():
        values = [r.in_page_s for r in runs if r.in_page_s is not None]
        in_page[name] = summary(values) if values else None

    print_runs(results, failures)
    verdict = print_summary(stats, in_page)
    detail: dict[str, Any] = {}
    if trace:
        detail = print_breakdown(results)
    if console and args.verbose:
        print("\nConsole warnings/errors (count, message); a 404 per page load is favicon.ico, on both servers:")
        for line, count in Counter(console).most_common(20):
            print(f"  {count:4} {line[:200]}")
    elif console:
        print(f"\n{len(console)} console warnings/errors in the pages (--verbose shows them).")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "join_time",
                    "unit": "s",
                    "runs": args.runs,
                    "goal_median_s": GOAL_S,
                    "verdict": verdict,
                    "product": {**stats["product"], "in_page": in_page["product"], "failed": len(failures["product"])},
                    "relay": {**stats["relay"], "in_page": in_page["relay"], "failed": len(failures["relay"])},
                    "runs_s": {name: [round(r.window_s, 4) for r in runs] for name, runs in results.items()},
                    **detail,
                },
                separators=(",", ":"),
            )
        )
    if args.dump:
        raw = {name: [{"window_s": r.window_s, "pages": r.raw} for r in runs] for name, runs in results.items()}
        args.dump.write_text(json.dumps(raw, indent=1), encoding="utf-8")
        print(f"\nRaw traces written to {args.dump}")
    if failures["product"] or failures["relay"]:
        print(f"\n{sum(map(len, failures.values()))} run(s) failed; figures above are from the others.")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="measured runs of each system (at least 5; default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs of each system first (default 1)")
    parser.add_argument("--new-pages", action="store_true", help="open new tabs for every run (see above)")
    parser.add_argument("--json", action="store_true", help="also print a one-line JSON summary at the end")
    parser.add_argument("--no-trace", action="store_true", help="do not inject bench/trace.js (window only)")
    parser.add_argument("--verbose", action="store_true", help="print the pages' console warnings")
    parser.add_argument("--dump", type=Path, help="write every run's raw page traces (JSON) to this file")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5 (a median of fewer runs says little on a noisy machine)")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")

    budget = 180 + (args.runs + args.warmup) * 2 * (RUN_TIMEOUT_S + 5)  # the whole bench stops by itself

    async def bounded(tmp: Path) -> int:
        # SIGTERM cancels the bench like Ctrl-C does: every `finally` runs (browser closed, servers stopped).
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await asyncio.wait_for(bench(args, tmp), budget)

    with tempfile.TemporaryDirectory(prefix="teleconsult-bench-") as tmp:
        try:
            return asyncio.run(bounded(Path(tmp)))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("join_time: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if isinstance(exc, BenchError | TimeoutError | AssertionError):
                print(f"join_time: error: {exc or type(exc).__name__}", file=sys.stderr)
            else:
                traceback.print_exc()
            log = Path(tmp) / "product" / "server.log"
            if log.exists():
                print("--- teleconsult server log (tail) ---", file=sys.stderr)
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
