"""Pairing under load, and the socket.io fan-out ceiling of one process vs two processes + Redis.

Issue 4: "bench/pairing.py prints request -> specialist-joined time for N simultaneous requests and the fan-out
ceiling of two processes + Redis vs one process (deliveries/s until p99 > 50 ms). Goals: 1,000 queued requests
paired with no lost or double offer; two processes deliver >= 1.6x one process."

Part 1, pairing (--part pairing). Real `teleconsult serve` processes (two, with a redis-server of the bench's own
as the socket.io manager; --processes 1: one, no Redis) on PostgreSQL, in a fresh schema that is dropped at the
end. No proxy: every client picks a process, round robin. Setup, not timed: `teleconsult migrate`, `seed --demo`,
then S cardiologists spread over the two seeded central hospitals (`teleconsult user add`), each put on call
for the next 23 hours (`teleconsult roster add`), and 2 more clinicians at each of the two seeded commune
stations (`teleconsult user add`). The commands go through `teleconsult.cli.main`, the entry point of the
`teleconsult` command, in ONE helper process (a process per command costs ~3 s of imports on this machine).
Patients are registered through the JSON API.

Each specialist is a python-socketio client in a bench worker process (--spec-procs, default 2), connected to
a server process round robin. It sends `presence.set` available and `pairing.offers`; on `pairing.offer` it
waits --think seconds, sends `pairing.accept`, then `room.join`, stays --consult seconds, ends the
consultation (POST /api/v1/consultations/{id}/end with a recommendation, ICD-10 code and outcome) and
`room.leave`s: free again. An offer that rings while the specialist is IN a consultation is counted (a double
offer) and declined; an offer that stopped ringing (offer_closed) before the think time ran out is not
answered. Then N requests (urgency "urgent", offer timeout --offer-timeout s) are POSTed at once by 6 clinicians,
over the server processes; a POST refused (5xx, dropped connection) is sent again after a pause (1 s, then up
to 5 s), as a clinician would press again, and the refusals are counted; the bench waits until no consultation
is open any more (or nothing moved for 3 offer timeouts + 30 s: STALLED). Per request, from the moment of its
FIRST press (wall clock, one machine):

  offer        -> the first `pairing.offer` for it reached a specialist's client
  accepted     -> the offer that was accepted reached its specialist
  joined       -> the specialist's `room.join` was acknowledged (the consultation is in progress)
  drain        first POST -> last join of the round

and from the database at the end of the round: consultations completed with exactly one `consultation.accept`
audit event ("lost" = the others); accepted twice; offers by status; offers left pending; a specialist holding
two consultations at once (overlapping [accepted_at, ended_at)). "Double offers" adds up: per specialist, two
offers whose [offered_at, answered_at) overlap as the rows say (these times are the `now` each transaction took
when it began, before waiting for a pooled connection or a lock, so under load they can be seconds early: the
detail lines let one check), per request two offers ringing at once (urgent rings one at a time), an offer
delivered twice, an offer during a consultation, and an offer arriving on a specialist's client while another
still rang there (delivered, neither answered nor closed). Also: offer push latency offered_at -> delivered.

Part 2, fan-out (--part fanout). Delivery = one server -> client event received. The event is `stream.frame`:
a monitor source sends binary ECG frames (1 lead, 250 Hz, 10 samples, ~30 bytes) into a consultation; the
server checks each frame, relays it to the consultation room AT ONCE (sio.emit to the room: with Redis,
published to every process, which writes it to its local members) and acks the source after the frame is
committed. It is the product's only room fan-out on which nothing waits: vitals.add and note.add commit a
transaction per event BEFORE their fan-out, so they measure the database; rtc.signal goes to one peer, not a
room. Each of R rooms (--rooms, default 40) holds 4 participants (TELECONSULT_MAX_ROOM_PARTICIPANTS): three
clinicians of the requesting station and the accepting cardiologist, each `room.join`ed; one source
connection per room (a clinician's token, `stream.open`). A frame is 4 deliveries. With 2 processes the source
of room i is on process i%2 and its 4 receivers alternate over both, so each frame has 2 local and 2 remote
receivers. Sources run in one bench worker, receivers in another (both the bench's minimal Engine.IO client from
bench/ecg_relay.py), separate from the servers. The offered rate climbs a ladder of deliveries/s (frames/s =
rate/4, spread evenly over the R sources); per step: warm-up, a measured window, grace. Latency = send time in the
source worker -> arrival in the receiver worker (time.monotonic: one clock for every process of the machine),
over the frames SENT in the window; lost = 4 x frames sent in the window - deliveries of them received. Ceiling =
highest step with p99 <= 50 ms, 0 lost, every frame acked. Goal: ceiling(2 processes + Redis) >= 1.6 x
ceiling(1 process). Servers of this part run with the heart-rate derivation off
(TELECONSULT_DERIVED_HR_INTERVAL_S=0), compaction every hour (TELECONSULT_COMPACTION_INTERVAL_S=3600, off for the
run) and a per-connection frame limit of 1000/s (TELECONSULT_FRAMES_PER_SECOND; default 100) so that the
sources are not rate limited at the top of the ladder; --server-env overrides.

Per step also "kept up": every delivery made, >= 95 % of the offered rate delivered, p50 <= 50 ms (the tail
ignored): what a process sustains when its p99 is set by pauses rather than by load. d/s/core = deliveries/s
per core the server process(es) used; it is elastic (a starved process batches its frame writes and spends less
per frame), so compare it between runs on a quiet machine only.

CPU per step (/proc, % of one core; the machine has os.cpu_count() cores, shared by EVERYTHING): each server
process, redis-server, every postgres process of the machine (other users' tests included), the bench
workers, and other% = the rest of the machine; before each step the bench waits up to --quiet-wait s for the
rest of the machine to go under 30 % of a core. /proc/loadavg is printed at start and end.

The servers get a sitecustomize.py on their PYTHONPATH that logs every full garbage collection stopping the
process for more than 20 ms (the bench prints how many and how long; nothing else changes). --gc-freeze is a
what-if, not the product: the same hook runs gc.collect() and gc.freeze() 8 s after start. --at-commit REV runs
the servers and the CLI from `git archive REV` (others may be editing the working tree meanwhile).

    .venv/bin/python bench/pairing.py [--quick] [--processes 1|2|both|all] [--part pairing|fanout|all]
        [--requests 10,100,1000] [--specialists 40] [--think 0.3] [--consult 1.0] [--offer-timeout 5]
        [--ladder 500,1000,...] [--rooms 40] [--measure 6] [--warmup 2]
        [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--server-env TELECONSULT_K=V]
        [--at-commit HEAD] [--gc-freeze] [--quiet-wait 5] [--keep] [--keep-schema] [--dump FILE] [--json]

Exit status 0 when the runs completed, whatever the figures; 1 when the bench could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import pickle
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for _p in (str(ROOT), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ecg_relay import (  # noqa: E402  (bench/ is a folder of scripts, not a package)
    RawClient,
    cpu_seconds,
    drop_pg_schema,
    free_port,
    load_source,
    machine_busy,
    pct,
    read_uvarint,
    wait_healthy,
)

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
RECORD = ROOT / "tests" / "data" / "physionet" / "s0010_re"
P99_GOAL_MS = 50.0
RATIO_GOAL = 1.6
QUEUE_GOAL = 1000
RECEIVERS_PER_ROOM = 4
SPOKES = ("TYT-TV", "TYT-CD")  # the seeded commune stations
HUBS = ("BVTW-BM", "BVTW-CR")  # the seeded central hospitals
TREE = [ROOT]  # the source tree whose `teleconsult` runs (--at-commit: a `git archive` of that commit)
FANOUT_ENV = {
    "TELECONSULT_DERIVED_HR_INTERVAL_S": "0",
    "TELECONSULT_COMPACTION_INTERVAL_S": "3600",
    "TELECONSULT_FRAMES_PER_SECOND": "1000",
    "TELECONSULT_FRAMES_BURST": "5000",
}


# ------------------------------------------------------------------------------------------------------------
# processes: redis-server, teleconsult serve, the bench's workers
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def problems(self) -> list[str]:
        """ERROR lines of the log, but for the pool's complaint about connections cancelled at shutdown."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [ln for ln in text.splitlines() if " ERROR " in ln and "Exception closing connection" not in ln]


def start_redis(tmp: Path) -> Proc:
    port = free_port()
    log = tmp / "redis.log"
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return Proc("redis", process, log, f"redis://127.0.0.1:{port}/0")
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"redis-server did not start: {log.read_text(errors='replace')[-500:]}")


GC_HOOK = """\
# Written by bench/pairing.py into the servers' PYTHONPATH: logs every garbage collection that stops the
# process for more than 20 ms; with BENCH_GC_FREEZE set, collects and gc.freeze()s the heap once, that many
# seconds after start (a what-if the product does not do).
import gc, os, sys, threading, time

_started = [0.0]


def _pause(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = 1000 * (time.perf_counter() - _started[0])
    if ms > 20:
        sys.stderr.write(f"BENCH-GC gen{info['generation']} {ms:.0f} ms\\n")


gc.callbacks.append(_pause)
if os.environ.get("BENCH_GC_FREEZE"):
    def _freeze():
        gc.collect()
        gc.freeze()
        sys.stderr.write(f"BENCH-GC froze {gc.get_freeze_count()} objects\\n")

    _timer = threading.Timer(float(os.environ["BENCH_GC_FREEZE"]), _freeze)
    _timer.daemon = True
    _timer.start()
if os.environ.get("BENCH_PROFILE") and "serve" in sys.argv:
    import atexit, cProfile

    _profile = cProfile.Profile()
    _profile.enable()
    atexit.register(lambda: _profile.dump_stats(os.path.join(os.environ["BENCH_PROFILE"], f"{os.getpid()}.prof")))
"""


def gc_pauses(logs: list[Path]) -> list[float]:
    """Full (generation 2) collections longer than 20 ms, in ms, from the servers' logs."""
    out = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if line.startswith("BENCH-GC gen2 "):
                out.append(float(line.split()[2]))
    return out


def server_env(pg_url: str, schema: str, extra: dict[str, str], tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    env.update({"TELECONSULT_DATABASE_URL": pg_url, "TELECONSULT_DATABASE_SCHEMA": schema})
    env["TELECONSULT_HOST"] = "127.0.0.1"
    hook = tmp / "gc-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(GC_HOOK)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "teleconsult.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=TREE[0],
    )
    if done.returncode != 0:
        raise RuntimeError(f"teleconsult {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def start_servers(tmp: Path, env: dict[str, str], count: int, redis_url: str | None, tag: str) -> list[Proc]:
    servers = []
    for k in range(count):
        port = free_port()
        e = dict(env, TELECONSULT_PORT=str(port))
        if redis_url:
            e["TELECONSULT_REDIS_URL"] = redis_url
        log = tmp / f"server-{tag}-{'AB'[k]}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "teleconsult.cli", "serve", "--port", str(port)],
            env=e,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=TREE[0],
        )
        servers.append(Proc(f"server {'AB'[k]}", process, log, f"http://127.0.0.1:{port}"))
    try:
        for s in servers:
            wait_healthy(s.url, s.process, s.log)
    except Exception:
        for s in servers:
            s.stop()
        raise
    return servers


class Worker:
    """A child process of this script: one JSON config line in, JSON lines out (read by a thread, so every
    wait has a timeout)."""

    def __init__(self, kind: str, cfg: dict[str, Any], log: Path) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
            cwd=ROOT,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send(cfg)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(msg) + "\n")
        self.process.stdin.flush()

    def recv(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.kind} worker: no answer within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"{self.kind} worker exited (see its log)")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"{self.kind} worker: {msg['error']}\n{msg.get('trace', '')}")
        return dict(msg)

    def call(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(msg)
        return self.recv(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"cmd": "stop"})
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(5)


def worker_main(kind: str) -> int:
    cfg = json.loads(sys.stdin.readline())
    if "source_file" in cfg:
        cfg["source"] = pickle.loads(Path(cfg["source_file"]).read_bytes())
    body = {"specialists": specialist_worker, "receivers": receiver_worker, "sources": source_worker}[kind]
    try:
        asyncio.run(body(cfg))
    except Exception as exc:
        emit({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        return 1
    return 0


def emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


async def commands() -> Any:
    """The parent's commands, one JSON line each, without blocking the worker's event loop."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        yield json.loads(line)


# ------------------------------------------------------------------------------------------------------------
# CPU of the machine's parts (/proc)
# ------------------------------------------------------------------------------------------------------------


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "postgres":
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def group_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(pid)
    return total


class CpuProbe:
    """CPU seconds of named groups of processes and of the whole machine, between two snapshots."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {name: group_cpu(pids) for name, pids in self.groups.items()}
        # Backends come and go: per pid, so that one started in the window counts from zero.
        snap["postgres"] = {pid: group_cpu([pid]) for pid in postgres_pids()}
        snap["machine"] = machine_busy()[0]
        snap["t"] = time.monotonic()
        return snap

    @staticmethod
    def percent(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        dt = max(1e-6, b["t"] - a["t"])
        out = {k: max(0.0, 100 * (b[k] - a[k]) / dt) for k in a if k not in ("t", "postgres")}
        pg = sum(v - a["postgres"].get(pid, 0.0) for pid, v in b["postgres"].items())
        out["postgres"] = max(0.0, 100 * pg / dt)
        known = sum(v for k, v in out.items() if k != "machine")
        out["other"] = max(0.0, out["machine"] - known)
        return out


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


# ------------------------------------------------------------------------------------------------------------
# setup through the CLI and the API
# ------------------------------------------------------------------------------------------------------------


def cli_batch_main(path: str, tree: str) -> int:
    """Run `teleconsult` commands through its entry point, one after the other, in this one process."""
    sys.path.insert(0, tree)
    from teleconsult.cli import main

    failures = 0
    for item in json.loads(Path(path).read_text()):
        out = io.StringIO()
        sys.stdin = io.StringIO(item.get("stdin", ""))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = main(item["argv"])
        if rc != 0:
            failures += 1
            print(f"teleconsult {' '.join(item['argv'])}: exit {rc}: {out.getvalue().strip()[-300:]}")
    return 1 if failures else 0


def people_commands(specialists: int, password: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """`teleconsult user add` and `roster add` for the bench's cardiologists, `user add` for 2 more clinicians
    at each spoke. A 24-hour shift starting an hour ago (local time): on call for the whole run."""
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    start = (datetime.now(UTC) - timedelta(hours=1)).astimezone(zone)
    day, clock = start.strftime("%d/%m/%Y"), start.strftime("%H:%M")
    cmds: list[dict[str, Any]] = []
    specs = []
    for i in range(specialists):
        name = f"bench_cardio_{i + 1:02d}"
        hub = HUBS[i % len(HUBS)]
        specs.append(name)
        argv = ["user", "add", name, "--role", "specialist", "--facility", hub, "--specialty", "cardiology"]
        cmds.append({"argv": [*argv, "--name", f"BS. Bench {i + 1:02d}"], "stdin": password + "\n"})
        cmds.append({"argv": ["roster", "add", "--user", name, "--date", day, "--from", clock, "--to", clock]})
    clinicians = ["clinician", "clinician2"]
    for spoke in SPOKES:
        for k in (1, 2):
            name = f"bench_clin_{spoke[-2:].lower()}_{k}"
            clinicians.append(name)
            argv = ["user", "add", name, "--role", "clinician", "--facility", spoke, "--name", f"BS. Spoke {name[-4:]}"]
            cmds.append({"argv": argv, "stdin": password + "\n"})
    return cmds, specs, clinicians


def create_people(env: dict[str, str], tmp: Path, specialists: int) -> tuple[list[str], list[str], float]:
    from teleconsult.seed import DEMO_PASSWORD

    cmds, specs, clinicians = people_commands(specialists, DEMO_PASSWORD)
    path = tmp / "cli-batch.json"
    path.write_text(json.dumps(cmds))
    t = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--cli-batch", str(path), "--tree", str(TREE[0])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"CLI batch failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return specs, clinicians, time.monotonic() - t


class Api:
    def __init__(self, http: Any) -> None:
        self.http = http

    async def token(self, url: str, username: str) -> str:
        from teleconsult.seed import DEMO_PASSWORD

        body = {"username": username, "password": DEMO_PASSWORD}
        async with self.http.post(f"{url}/api/v1/auth/token", json=body) as resp:
            if resp.status != 201:
                raise RuntimeError(f"login {username}: {resp.status} {await resp.text()}")
            return str((await resp.json())["token"])

    async def call(self, method: str, url: str, token: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(method, url, json=body, headers=headers) as resp:
            if resp.status >= 300 and resp.status not in ok:
                raise RuntimeError(f"{method} {url}: {resp.status} {(await resp.text())[:300]}")
            return await resp.json()


async def register_patients(api: Api, url: str, tokens: dict[str, str], per_clinician: int) -> dict[str, list[int]]:
    """Fictional patients, registered by each clinician at their station (12-digit CCCD, unique per run)."""
    out: dict[str, list[int]] = {}
    base = secrets.randbelow(10**8)
    n = 0
    for who, tok in tokens.items():
        out[who] = []
        for _ in range(per_clinician):
            n += 1
            body = {
                "cccd": f"0{(base + n) % 10**8:08d}999",
                "full_name": f"Bệnh nhân Thử {n}",
                "date_of_birth": f"19{50 + n % 40}-0{1 + n % 9}-1{n % 9}",
                "sex": "female" if n % 2 else "male",
            }
            created = await api.call("POST", f"{url}/api/v1/patients", tok, body)
            out[who].append(int(created["id"]))
    return out


# ------------------------------------------------------------------------------------------------------------
# part 1 worker: specialists
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Specialist:
    username: str
    url: str
    token: str = ""
    sio: Any = None
    user_id: int = 0
    in_consultation: bool = False
    ringing: dict[int, float] = field(default_factory=dict)  # offer id -> when it arrived
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def specialist_worker(cfg: dict[str, Any]) -> None:
    import aiohttp
    import socketio

    think, consult = float(cfg["think_s"]), float(cfg["consult_s"])
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    api = Api(http)
    specs = [Specialist(u, url) for u, url in cfg["specialists"]]
    rec: dict[str, list[Any]] = {k: [] for k in ("offers", "accepts", "joins", "ends", "closed", "doubles", "events")}
    tasks: set[asyncio.Task[None]] = set()
    ending = {"recommendation": "Tiếp tục theo dõi tại tuyến xã.", "icd10_code": "I20.0", "outcome": "follow_up"}

    async def take(spec: Specialist, ring: dict[str, Any]) -> None:
        offer_id, cid = int(ring["offer"]["id"]), int(ring["offer"]["consultation_id"])
        async with spec.lock:  # one consultation at a time; an offer during the wrap-up of the last waits here
            await asyncio.sleep(think)
            if offer_id not in spec.ringing:  # it stopped ringing (expired, taken) before the specialist answered
                return
            ack = await spec.sio.call("pairing.accept", {"consultation_id": cid}, timeout=60)
            spec.ringing.pop(offer_id, None)
            ok = bool(ack and ack.get("ok"))
            code = None if ok else (ack or {}).get("error", {}).get("code", "?")
            rec["accepts"].append([cid, offer_id, spec.user_id, time.time(), ok, code])
            if not ok:
                return
            spec.in_consultation = True
            ack = await spec.sio.call("room.join", {"consultation_id": cid}, timeout=60)
            rec["joins"].append([cid, spec.user_id, time.time(), bool(ack and ack.get("ok"))])
            await asyncio.sleep(consult)
            spec.in_consultation = False
            url = f"{spec.url}/api/v1/consultations/{cid}/end"
            resp: dict[str, Any] = {}
            for attempt in range(20):  # a refused end (5xx under load) is pressed again
                try:
                    resp = await api.call("POST", url, spec.token, ending, ok=(409,))
                    break
                except RuntimeError as exc:
                    rec["events"].append(f"end {cid} refused: {str(exc)[:120]}")
                    await asyncio.sleep(min(5.0, 1.0 + attempt))
            rec["ends"].append([cid, time.time(), resp.get("status") == "completed"])
            await spec.sio.call("room.leave", {"consultation_id": cid}, timeout=60)

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(
            lambda t: t.cancelled() or not t.exception() or rec["events"].append(repr(t.exception()))
        )

    def on_offer(spec: Specialist) -> Any:
        async def handler(data: dict[str, Any]) -> None:
            now = time.time()
            offer_id, cid = int(data["offer"]["id"]), int(data["offer"]["consultation_id"])
            rec["offers"].append([cid, offer_id, spec.user_id, now])
            others = {o: round(now - t, 3) for o, t in spec.ringing.items() if o != offer_id}
            if others:  # what the specialist sees: two offers ringing on their screen at once
                rec["doubles"].append([spec.user_id, offer_id, others])
            spec.ringing[offer_id] = now
            if spec.in_consultation:  # the policy must never ring someone who is in a consultation
                rec["events"].append(f"offer {offer_id} during a consultation of user {spec.user_id}")
                spec.ringing.pop(offer_id, None)
                spawn(spec.sio.call("pairing.decline", {"offer_id": offer_id, "reason": "in a consultation"}))
                return
            spawn(take(spec, data))

        return handler

    def on_closed(spec: Specialist) -> Any:
        async def handler(data: dict[str, Any]) -> None:
            offer = data["offer"]
            spec.ringing.pop(int(offer["id"]), None)
            rec["closed"].append([int(offer["id"]), offer["status"], time.time()])

        return handler

    async def connect(spec: Specialist) -> None:
        spec.token = await api.token(spec.url, spec.username)
        spec.sio = socketio.AsyncClient(reconnection=False, http_session=http)
        spec.sio.on("pairing.offer", on_offer(spec))
        spec.sio.on("pairing.offer_closed", on_closed(spec))
        spec.sio.on("disconnect", lambda *a: rec["events"].append(f"{spec.username} disconnected"))
        await spec.sio.connect(spec.url, auth={"token": spec.token}, transports=["websocket"], wait_timeout=30)
        ack = await spec.sio.call("presence.set", {"availability": "available"}, timeout=30)
        if not ack or not ack.get("ok"):
            raise RuntimeError(f"presence.set {spec.username}: {ack}")
        spec.user_id = int(ack["presence"]["user_id"])
        ringing = await spec.sio.call("pairing.offers", {}, timeout=30)
        for ring in (ringing or {}).get("offers", []):
            spec.ringing[int(ring["offer"]["id"])] = time.time()
            spawn(take(spec, ring))

    sem = asyncio.Semaphore(8)

    async def guarded(spec: Specialist) -> None:
        async with sem:
            await connect(spec)

    await asyncio.gather(*(guarded(s) for s in specs))
    emit({"ready": True, "users": {s.username: s.user_id for s in specs}})
    async for cmd in commands():
        if cmd["cmd"] == "dump":
            emit({"records": rec})
            rec = {k: [] for k in rec}
        elif cmd["cmd"] == "stop":
            break
    for task in list(tasks):
        task.cancel()
    for s in specs:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s.sio.disconnect(), 5)
    await http.close()


# ------------------------------------------------------------------------------------------------------------
# part 1: the pairing run
# ------------------------------------------------------------------------------------------------------------


@dataclass
class RoundResult:
    n: int
    created: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    create_s: float = 0.0
    orphans: int = 0
    completed: int = 0
    stalled: bool = False
    drain_s: float | None = None
    t_offer: list[float] = field(default_factory=list)
    t_accepted_offer: list[float] = field(default_factory=list)
    t_joined: list[float] = field(default_factory=list)
    push_ms: list[float] = field(default_factory=list)
    server_pairing_s: list[float] = field(default_factory=list)
    offers: Counter[str] = field(default_factory=Counter)
    double_accepts: int = 0
    accepted_offers_bad: int = 0
    pending_left: int = 0
    spec_overlaps: int = 0
    case_overlaps: int = 0
    overlap_notes: list[str] = field(default_factory=list)
    offered_at: dict[int, float] = field(default_factory=dict)
    client_doubles: int = 0
    two_at_once: int = 0
    dup_deliveries: int = 0
    offers_in_consultation: int = 0
    offers_delivered: int = 0
    accept_refused: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Requests not completed with exactly one accept."""
        return self.n - self.completed

    @property
    def doubles(self) -> int:
        return (
            self.spec_overlaps + self.case_overlaps + self.dup_deliveries + self.offers_in_consultation
        ) + self.client_doubles


async def pg_connect(pg_url: str, schema: str) -> Any:
    import asyncpg

    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


def utc(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


async def create_requests(
    api: Api, servers: list[Proc], clinicians: list[tuple[str, str]], patients: dict[str, list[int]], n: int
) -> tuple[dict[int, float], Counter[str], float]:
    """N requests at once (every POST in flight together), round robin over clinicians and processes. A refused
    POST (5xx, a dropped connection) is sent again after a pause, as a clinician would press again: the figures
    count from the first press. Returns {id: first press}, refusals by reason, seconds until all were created."""
    sent: dict[int, float] = {}
    refusals: Counter[str] = Counter()

    async def one(i: int) -> None:
        who, tok = clinicians[i % len(clinicians)]
        url = servers[i % len(servers)].url
        pts = patients[who]
        body = {
            "patient_id": pts[(i // len(clinicians)) % len(pts)],
            "specialty": "cardiology",
            "urgency": "urgent",
            "summary": f"Đau ngực {i}: bench request, ECG at the station shows ST changes.",
        }
        t0 = time.time()
        for attempt in range(30):
            try:
                created = await api.call("POST", f"{url}/api/v1/consultations", tok, body)
                sent[int(created["id"])] = t0
                return
            except Exception as exc:
                text = str(exc)
                refusals[text.split(": ", 1)[1][:3] if text.startswith("POST") else type(exc).__name__] += 1
                await asyncio.sleep(min(5.0, 1.0 + attempt))
        refusals["gave up after 30 presses"] += 1

    t = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return sent, refusals, time.monotonic() - t


async def wait_drained(conn: Any, stall_s: float, limit_s: float) -> bool:
    """Until no consultation is open any more (requested, offered, accepted, in progress): the round's, and any
    a refused POST created all the same. Gives up when nothing moved for ``stall_s`` or after ``limit_s``;
    returns True when it gave up."""
    t0 = last_move = time.monotonic()
    last = None
    while True:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status IN ('requested', 'offered', 'accepted', 'in_progress')) AS open, "
            "count(*) FILTER (WHERE status = 'completed') AS done, (SELECT count(*) FROM pairing_offers) AS offers "
            "FROM consultations"
        )
        if row["open"] == 0:
            return False
        state = (row["done"], row["offers"])
        if state != last:
            last, last_move = state, time.monotonic()
        now = time.monotonic()
        if now - last_move > stall_s or now - t0 > limit_s:
            return True
        await asyncio.sleep(0.5)


async def check_db(conn: Any, ids: list[int], out: RoundResult) -> dict[int, tuple[int, float, int]]:
    """Correctness from the rows; returns the accepted offer of each request: (offer id, offered_at, user)."""
    offers = await conn.fetch(
        "SELECT id, consultation_id, specialist_user_id, status, offered_at, answered_at FROM pairing_offers "
        "WHERE consultation_id = ANY($1) ORDER BY offered_at, id",
        ids,
    )
    audits = await conn.fetch(
        "SELECT entity_id, count(*) AS n FROM audit_events WHERE action = 'consultation.accept' "
        "AND outcome = 'success' AND entity_id = ANY($1) GROUP BY entity_id",
        [str(i) for i in ids],
    )
    per_case = {int(r["entity_id"]): int(r["n"]) for r in audits}
    rows = await conn.fetch("SELECT id, status, created_at, accepted_at FROM consultations WHERE id = ANY($1)", ids)
    out.completed = sum(1 for r in rows if r["status"] == "completed" and per_case.get(r["id"]) == 1)
    out.double_accepts = sum(1 for n in per_case.values() if n > 1)
    out.server_pairing_s = [utc(r["accepted_at"]) - utc(r["created_at"]) for r in rows if r["accepted_at"]]
    out.offers = Counter(r["status"] for r in offers)
    out.pending_left = out.offers.get("pending", 0)
    accepted: dict[int, tuple[int, float, int]] = {}
    accepted_count: Counter[int] = Counter()
    for r in offers:
        if r["status"] == "accepted":
            accepted_count[r["consultation_id"]] += 1
            accepted[r["consultation_id"]] = (r["id"], utc(r["offered_at"]), r["specialist_user_id"])
    out.accepted_offers_bad = sum(1 for i in ids if accepted_count[i] != 1)
    out.offered_at = {r["id"]: utc(r["offered_at"]) for r in offers}
    held = await conn.fetch(
        "SELECT specialist_user_id, accepted_at, ended_at FROM consultations "
        "WHERE id = ANY($1) AND accepted_at IS NOT NULL ORDER BY accepted_at",
        ids,
    )
    spans: dict[int, list[tuple[float, float]]] = {}
    for r in held:
        end = utc(r["ended_at"]) if r["ended_at"] else float("inf")
        spans.setdefault(r["specialist_user_id"], []).append((utc(r["accepted_at"]), end))
    out.two_at_once = sum(1 for v in spans.values() for a, b in zip(v, v[1:], strict=False) if b[0] < a[1])
    out.spec_overlaps, notes = overlaps(offers, "specialist_user_id")
    out.case_overlaps, more = overlaps(offers, "consultation_id")
    out.overlap_notes = notes + more
    for i in ids:
        if accepted_count[i] != 1 and len(out.overlap_notes) < 8:
            mine = [f"{r['id']} {r['status']}" for r in offers if r["consultation_id"] == i]
            out.overlap_notes.append(f"request {i}: {accepted_count[i]} accepted offers ({', '.join(mine)})")
    return accepted


def overlaps(offers: list[Any], key: str) -> tuple[int, list[str]]:
    """Offers of one specialist (or one request) whose [offered_at, answered_at) intervals overlap, as the rows
    say; with a line on each (the times are each transaction's `now`, taken when it began)."""
    by: dict[int, list[Any]] = {}
    for r in offers:
        by.setdefault(r[key], []).append(r)
    count, notes = 0, []
    for owner, rows in by.items():
        rows.sort(key=lambda r: (r["offered_at"], r["id"]))
        reach, holder = float("-inf"), None
        for r in rows:
            start = utc(r["offered_at"])
            if start < reach and holder is not None:
                count += 1
                notes.append(
                    f"{key} {owner}: offer {r['id']} ({r['status']}) offered {1000 * (reach - start):.0f} ms before "
                    f"offer {holder['id']} ({holder['status']}) was answered"
                )
            end = utc(r["answered_at"]) if r["answered_at"] else float("inf")
            if end > reach:
                reach, holder = end, r
    return count, notes


def merge_records(dumps: list[dict[str, Any]]) -> dict[str, list[Any]]:
    rec: dict[str, list[Any]] = {}
    for d in dumps:
        for k, v in d["records"].items():
            rec.setdefault(k, []).extend(v)
    return rec


def figures_of(out: RoundResult, sent: dict[int, float], rec: dict[str, list[Any]], accepted: dict[int, Any]) -> None:
    first_offer: dict[int, float] = {}
    delivered: dict[int, float] = {}
    seen: Counter[int] = Counter()
    for cid, offer_id, _user, t in rec["offers"]:
        if cid in sent:
            first_offer[cid] = min(first_offer.get(cid, t), t)
            delivered.setdefault(offer_id, t)
            seen[offer_id] += 1
    out.offers_delivered = sum(1 for _ in seen)
    out.dup_deliveries = sum(c - 1 for c in seen.values() if c > 1)
    out.t_offer = [first_offer[c] - sent[c] for c in sent if c in first_offer]
    for cid, (offer_id, _offered_at, _user) in accepted.items():
        if offer_id in delivered:
            out.t_accepted_offer.append(delivered[offer_id] - sent[cid])
    out.push_ms = [1000 * (t - out.offered_at[o]) for o, t in delivered.items() if o in out.offered_at]
    joins = {cid: t for cid, _user, t, ok in rec["joins"] if ok and cid in sent}
    out.t_joined = [joins[c] - sent[c] for c in sent if c in joins]
    if joins:
        out.drain_s = max(joins.values()) - min(sent.values())
    out.accept_refused = Counter(code for cid, _o, _u, _t, ok, code in rec["accepts"] if not ok and cid in sent)
    out.offers_in_consultation = sum(1 for e in rec["events"] if "during a consultation" in e)
    out.client_doubles = len(rec["doubles"])
    for user, offer_id, others in rec["doubles"][:3]:
        ringing = ", ".join(f"{o} (arrived {age:.3f} s before)" for o, age in others.items())
        out.overlap_notes.append(f"client of user {user}: offer {offer_id} arrived while {ringing} still rang")
    out.events = [e for e in rec["events"] if "during a consultation" not in e][:5]


async def pairing_round(
    n: int,
    servers: list[Proc],
    workers: list[Worker],
    clinicians: list[tuple[str, str]],
    patients: dict[str, list[int]],
    args: Any,
    probe: CpuProbe,
) -> RoundResult:
    import aiohttp

    out = RoundResult(n)
    conn = await pg_connect(args.pg_url, args.schema)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:
            c0 = probe.snapshot()
            started = datetime.now(UTC)
            sent, out.refusals, out.create_s = await create_requests(Api(http), servers, clinicians, patients, n)
            out.created = len(sent)
            ids = sorted(sent)
            per_cycle = args.think + args.consult + 1.0
            limit = 120 + 4 * per_cycle * n / max(1, args.specialists)
            out.stalled = await wait_drained(conn, 3 * args.offer_timeout + 30, limit)
            out.cpu = CpuProbe.percent(c0, probe.snapshot())
        await asyncio.sleep(1.0)  # the last room.leave and offer_closed pushes
        rec = merge_records([w.call({"cmd": "dump"}, 60) for w in workers])
        if args.dump:
            line = json.dumps({"n": n, "sent": sent, "records": rec, "schema": args.schema}) + "\n"
            await asyncio.to_thread(append_text, args.dump, line)
        accepted = await check_db(conn, ids, out)
        orphans = await conn.fetchval(
            "SELECT count(*) FROM consultations WHERE created_at >= $1 AND NOT (id = ANY($2))", started, ids
        )
        out.orphans = int(orphans)
        figures_of(out, sent, rec, accepted)
    finally:
        await conn.close()
    return out


def append_text(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def s(values: list[float], q: float) -> str:
    v = pct(values, q)
    return "-" if v is None else f"{v:.2f}"


def print_round(r: RoundResult) -> None:
    print(
        f"  N={r.n}: {r.created} created in {r.create_s:.1f} s; completed {r.completed}"
        f"{' (STALLED)' if r.stalled else ''}; drain {r.drain_s or 0:.1f} s",
        flush=True,
    )
    for label, values in (
        ("request -> offer delivered", r.t_offer),
        ("request -> accepted offer delivered", r.t_accepted_offer),
        ("request -> specialist joined", r.t_joined),
        ("created -> accepted (server clock)", r.server_pairing_s),
    ):
        print(
            f"      {label:<37} s  p50 {s(values, 50):>7}  p90 {s(values, 90):>7}  p99 {s(values, 99):>7}  "
            f"max {f'{max(values):.2f}' if values else '-':>7}  (n={len(values)})"
        )
    push = r.push_ms
    print(
        f"      offer push (offered_at -> client)  ms p50 {s(push, 50):>7}  p99 {s(push, 99):>7}  "
        f"max {f'{max(push):.1f}' if push else '-':>7}"
    )
    offers = ", ".join(f"{k} {v}" for k, v in sorted(r.offers.items()))
    print(f"      offers: {sum(r.offers.values())} ({offers}); delivered to clients {r.offers_delivered}")
    print(
        f"      checks: lost {r.lost}; accepted twice {r.double_accepts}; accepted offers != 1: "
        f"{r.accepted_offers_bad}; pending left {r.pending_left}; specialist rung twice at once {r.spec_overlaps}; "
        f"request ringing twice at once {r.case_overlaps}; offer delivered twice {r.dup_deliveries}; "
        f"offer during a consultation {r.offers_in_consultation}; two ringing at once on a specialist's screen "
        f"{r.client_doubles}; specialist holding two consultations at once {r.two_at_once}"
    )
    if r.accept_refused:
        print(f"      accepts refused: {dict(r.accept_refused)}")
    cpu = r.cpu
    parts = " ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k not in ("machine",))
    print(f"      CPU % of a core over the round: {parts} (machine {cpu.get('machine', 0):.0f} of {os_cpus()}00)")
    if r.refusals:
        presses = ", ".join(f"{k}: {v}" for k, v in r.refusals.most_common())
        print(
            f"      POSTs refused and pressed again: {sum(r.refusals.values())} ({presses}); created by a refused "
            f"POST all the same (not in the figures): {r.orphans}"
        )
    for note in r.overlap_notes[:8]:
        print(f"      detail: {note}")
    for e in r.events[:3]:
        print(f"      note: {e}")


def os_cpus() -> int:
    return os.cpu_count() or 1


def run_pairing(tmp: Path, env: dict[str, str], redis: Proc | None, people: Any, args: Any) -> list[RoundResult]:
    specs, clinician_names = people
    count = 1 if args.processes == "1" else 2
    servers = start_servers(tmp, env, count, redis.url if redis and count == 2 else None, "pairing")
    workers: list[Worker] = []
    results: list[RoundResult] = []
    try:
        nw = max(1, min(args.spec_procs, len(specs)))
        for k in range(nw):
            mine = [[u, servers[i % count].url] for i, u in enumerate(specs) if i % nw == k]
            cfg = {"specialists": mine, "think_s": args.think, "consult_s": args.consult}
            workers.append(Worker("specialists", cfg, tmp / f"specialists-{k}.log"))
        for w in workers:
            w.recv(180)

        async def prepare() -> tuple[list[tuple[str, str]], dict[str, list[int]]]:
            import aiohttp

            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                api = Api(http)
                tokens = {c: await api.token(servers[0].url, c) for c in clinician_names}
                patients = await register_patients(api, servers[0].url, tokens, 10)
            return list(tokens.items()), patients

        clinicians, patients = asyncio.run(prepare())
        groups = {f"srv {'AB'[i]}": [sv.pid] for i, sv in enumerate(servers)}
        if redis and count == 2:
            groups["redis"] = [redis.pid]
        groups["bench"] = [w.pid for w in workers]
        probe = CpuProbe(groups)
        where = f"{count} process{'es + Redis' if count == 2 else ''}"
        print(
            f"\nPairing: {len(specs)} cardiologists (python-socketio clients in {nw} bench processes) over {where}; "
            f"think {args.think:g} s, consultation {args.consult:g} s, urgent offers ring {args.offer_timeout:g} s; "
            f"{len(clinicians)} clinicians request",
            flush=True,
        )
        for n in args.requests:
            r = asyncio.run(pairing_round(n, servers, workers, clinicians, patients, args, probe))
            results.append(r)
            print_round(r)
    finally:
        for w in workers:
            w.stop()
        for sv in servers:
            sv.stop()
            bad = sv.problems()
            if bad:
                print(f"  {sv.name} log: {len(bad)} error lines, e.g. {bad[0][:200]}")
        print_gc(servers)
    return results


# ------------------------------------------------------------------------------------------------------------
# part 2 workers: receivers and sources (bench/ecg_relay.py's Engine.IO client)
# ------------------------------------------------------------------------------------------------------------


async def receiver_worker(cfg: dict[str, Any]) -> None:
    keys = array("q")
    times = array("d")
    monotonic = time.monotonic
    clients: list[RawClient] = []
    seen_in_join: list[list[int]] = []

    def on_frame(payload: bytes) -> None:
        now = monotonic()
        stream_id, pos = read_uvarint(payload, 2)
        seq, _ = read_uvarint(payload, pos)
        keys.append((stream_id << 32) | seq)
        times.append(now)

    sem = asyncio.Semaphore(16)

    async def join(cid: int, token: str, url: str) -> None:
        async with sem:
            c = RawClient()
            await c.connect(url, token)
            c.on_frame = on_frame
            ack = await c.call("room.join", {"consultation_id": cid})
            if not ack or not ack.get("ok"):
                raise RuntimeError(f"room.join {cid}: {ack}")
            seen_in_join.append([cid, len(ack.get("participants", []))])
            clients.append(c)

    await asyncio.gather(*(join(*entry) for entry in cfg["receivers"]))
    emit({"ready": True, "participants_seen": seen_in_join})
    async for cmd in commands():
        if cmd["cmd"] == "mark":
            del keys[:]
            del times[:]
            emit({"marked": True})
        elif cmd["cmd"] == "count":
            emit({"count": len(keys)})
        elif cmd["cmd"] == "dump":
            closed = [c.closed_reason for c in clients if c.closed_reason]
            emit({"keys": keys.tolist(), "times": times.tolist(), "closed": closed[:3], "n_closed": len(closed)})
            del keys[:]
            del times[:]
        elif cmd["cmd"] == "stop":
            break
    for c in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.close(), 5)


async def source_worker(cfg: dict[str, Any]) -> None:
    source = cfg["source"]
    monotonic = time.monotonic
    streams: list[dict[str, Any]] = []
    sem = asyncio.Semaphore(16)

    async def open_stream(index: int, cid: int, token: str, url: str) -> None:
        async with sem:
            c = RawClient()
            await c.connect(url, token)
            body = {
                "consultation_id": cid,
                "source_key": f"{cfg['key_prefix']}-{index}",
                "label": "bench 1-lead",
                "sample_rate": source.rate,
                "signals": source.signals,
            }
            ack = await c.call("stream.open", body)
            if not ack or not ack.get("ok"):
                raise RuntimeError(f"stream.open {cid}: {ack}")
            streams.append({"client": c, "id": int(ack["stream"]["id"]), "seq": int(ack.get("next_seq", 0))})

    await asyncio.gather(*(open_stream(*entry) for entry in cfg["sources"]))
    emit({"ready": True, "streams": [st["id"] for st in streams]})
    async for cmd in commands():
        if cmd["cmd"] == "stop":
            break
        emit(await send_step(streams, source, cmd, monotonic))
    for st in streams:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(st["client"].close(), 5)


async def send_step(streams: list[dict[str, Any]], source: Any, cmd: dict[str, Any], monotonic: Any) -> dict[str, Any]:
    """Frames at ``cmd['fps']`` in total, spread evenly over the streams, from t0 to the end of grace."""
    n = len(streams)
    period = n / float(cmd["fps"])  # per stream
    t0 = float(cmd["t0"])
    w0, w1 = t0 + cmd["warmup"], t0 + cmd["warmup"] + cmd["measure"]
    end = w1 + cmd["grace"]
    window_keys, window_times, ack_ms, lags = array("q"), array("d"), [], []
    state = {"ok": 0, "inflight": 0, "sent": 0}
    errors: Counter[str] = Counter()

    def on_ack(sent_at: float, in_window: bool) -> Any:
        def done(data: Any) -> None:
            state["inflight"] -= 1
            if isinstance(data, dict) and data.get("ok"):
                state["ok"] += 1
                if in_window:
                    ack_ms.append(1000 * (monotonic() - sent_at))
            else:
                errors[(data or {}).get("error", {}).get("code", "?") if isinstance(data, dict) else "?"] += 1

        return done

    j = unslept = 0
    while True:
        k, i = divmod(j, n)
        due = t0 + (k + i / n) * period
        if due >= end:
            break
        now = monotonic()
        if due > now + 0.0005:
            await asyncio.sleep(due - now)
            unslept = 0
        elif unslept >= 8:
            await asyncio.sleep(0)
            unslept = 0
        else:
            unslept += 1
        st = streams[i]
        seq = st["seq"]
        payload = source.frame(st["id"], seq)
        now = monotonic()
        in_window = w0 <= due < w1
        if in_window:
            window_keys.append((st["id"] << 32) | seq)
            window_times.append(now)
            lags.append(now - due)
        state["inflight"] += 1
        try:
            st["client"].send_frame(payload, on_ack(now, in_window))
            st["seq"] = seq + 1
            state["sent"] += 1
        except Exception as exc:
            state["inflight"] -= 1
            errors[f"send: {type(exc).__name__}"] += 1
        j += 1
    deadline = monotonic() + cmd["ack_wait"]
    while state["inflight"] > 0 and monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return {
        "keys": window_keys.tolist(),
        "times": window_times.tolist(),
        "sent": state["sent"],
        "acked": state["ok"],
        "unacked": state["inflight"],
        "errors": dict(errors),
        "ack_p50": pct(ack_ms, 50),
        "ack_p99": pct(ack_ms, 99),
        "lag_p99_ms": 1000 * (pct(lags, 99) or 0.0),
    }


# ------------------------------------------------------------------------------------------------------------
# part 2: the ladder
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Step:
    setup: str
    rate: int
    achieved: float = 0.0
    sent_window: int = 0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    p50: float | None = None
    p99: float | None = None
    pmax: float | None = None
    ack_p99: float | None = None
    sent: int = 0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lag_p99_ms: float = 0.0
    closed: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    failed: str = ""

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def within_goal(self) -> bool:
        return (
            not self.failed
            and self.p99 is not None
            and self.p99 <= P99_GOAL_MS
            and self.lost == 0
            and self.acked == self.sent
            and self.sent_window > 0
        )

    @property
    def sustained(self) -> bool:
        """Keeps up, whatever the tail: every delivery made, >= 95 % of the offered rate, median <= the goal."""
        return (
            not self.failed
            and self.lost == 0
            and self.acked == self.sent
            and self.achieved >= 0.95 * self.rate
            and self.p50 is not None
            and self.p50 <= P99_GOAL_MS
        )

    @property
    def collapsed(self) -> bool:
        far_behind = self.achieved < 0.8 * self.rate or (self.p50 or 0) > 500
        return bool(self.failed) or far_behind or self.lost > 0.01 * max(1, self.expected)

    @property
    def server_cpu(self) -> float:
        return sum(v for k, v in self.cpu.items() if k.startswith("srv"))

    @property
    def per_core(self) -> float | None:
        """Deliveries per second per core the server process(es) used."""
        return self.achieved / (self.server_cpu / 100) if self.server_cpu > 1 else None

    @property
    def bench_bound(self) -> bool:
        return self.lag_p99_ms > 5 or max(self.cpu.get("sources", 0), self.cpu.get("receivers", 0)) > 90


async def prepare_rooms(servers: list[Proc], rooms: int) -> tuple[list[int], dict[str, str]]:
    """``rooms`` consultations requested at TYT-TV and accepted by `cardiologist`; tokens of the 4 members."""
    import aiohttp

    url = servers[0].url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        api = Api(http)
        members = ["clinician", "bench_clin_tv_1", "bench_clin_tv_2", "cardiologist"]
        tokens = {m: await api.token(url, m) for m in members}
        found = await api.call("GET", f"{url}/api/v1/patients?q=giang", tokens["clinician"])
        patient_id = found["patients"][0]["id"]
        sem = asyncio.Semaphore(4)

        async def one(i: int) -> int:
            async with sem:
                body = {
                    "patient_id": patient_id,
                    "specialty": "cardiology",
                    "urgency": "routine",
                    "summary": f"Bench fan-out room {i}: live ECG.",
                }
                created = await api.call("POST", f"{url}/api/v1/consultations", tokens["clinician"], body)
                cid = int(created["id"])
                await api.call("POST", f"{url}/api/v1/consultations/{cid}/accept", tokens["cardiologist"])
                return cid

        ids = list(await asyncio.gather(*(one(i) for i in range(rooms))))
    return ids, tokens


def run_step(setup: str, rate: int, senders: Worker, receivers: Worker, probe: CpuProbe, args: Any) -> Step:
    out = Step(setup, rate)
    receivers.call({"cmd": "mark"}, 30)
    t0 = time.monotonic() + 0.3
    cmd = {"cmd": "step", "fps": rate / RECEIVERS_PER_ROOM, "t0": t0, "warmup": args.warmup, "measure": args.measure}
    senders.send(cmd | {"grace": args.grace, "ack_wait": 10.0})
    w0 = t0 + args.warmup
    time.sleep(max(0.0, w0 - time.monotonic()))
    c0 = probe.snapshot()
    time.sleep(max(0.0, w0 + args.measure - time.monotonic()))
    out.cpu = CpuProbe.percent(c0, probe.snapshot())
    sent = senders.recv(args.warmup + args.measure + args.grace + 60)
    # Late is not lost: wait while deliveries still arrive (a backlog in a process or in Redis), up to 20 s.
    last, t_wait = -1, time.monotonic()
    while time.monotonic() - t_wait < 20:
        count = receivers.call({"cmd": "count"}, 30)["count"]
        if count == last:
            break
        last = count
        time.sleep(1.0)
    got = receivers.call({"cmd": "dump"}, 60)
    send_time = dict(zip(sent["keys"], sent["times"], strict=True))
    counts: Counter[int] = Counter()
    latencies = []
    for key, t in zip(got["keys"], got["times"], strict=True):
        sent_at = send_time.get(key)
        if sent_at is not None:
            counts[key] += 1
            latencies.append(1000 * (t - sent_at))
    out.sent_window = len(send_time)
    out.expected = RECEIVERS_PER_ROOM * out.sent_window
    out.received = sum(min(c, RECEIVERS_PER_ROOM) for c in counts.values())
    out.duplicates = sum(max(0, c - RECEIVERS_PER_ROOM) for c in counts.values())
    out.achieved = out.received / args.measure
    out.p50, out.p99 = pct(latencies, 50), pct(latencies, 99)
    out.pmax = max(latencies) if latencies else None
    out.ack_p99, out.sent, out.acked = sent["ack_p99"], sent["sent"], sent["acked"]
    out.errors, out.lag_p99_ms, out.closed = sent["errors"], sent["lag_p99_ms"], got["n_closed"]
    return out


def wait_quiet(probe: CpuProbe, limit_s: float, quiet_pct: float = 30.0) -> float:
    """Up to ``limit_s`` for the rest of the machine (PostgreSQL included: other users' tests use it) to use
    less than ``quiet_pct`` of a core over a second. Returns the last busy figure."""
    t0 = time.monotonic()
    while True:
        a = probe.snapshot()
        time.sleep(1.0)
        cpu = CpuProbe.percent(a, probe.snapshot())
        busy = cpu["other"] + cpu["postgres"]
        if busy < quiet_pct or time.monotonic() - t0 >= limit_s:
            return busy


def settle(servers: list[Proc], idle_pct: float = 10.0, limit_s: float = 30.0) -> None:
    """Until the servers are idle again: an overloaded step leaves a backlog that would disturb the next."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        a = group_cpu([sv.pid for sv in servers])
        time.sleep(0.5)
        if 100 * (group_cpu([sv.pid for sv in servers]) - a) / 0.5 < idle_pct * len(servers):
            return


def f1(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


LADDER_HEADER = (
    f"  {'offered/s':>9} {'deliv/s':>8} {'p50 ms':>7} {'p99 ms':>8} {'max ms':>8} {'lost':>6} {'dup':>4} "
    f"{'ack p99':>8} {'acked/sent':>13} {'srv% (each)':>13} {'redis%':>6} {'pg%':>5} {'bench%':>10} "
    f"{'other%':>6} {'lag99':>6} {'d/s/core':>8}"
)


def print_step(st: Step) -> None:
    if st.failed:
        print(f"  {st.rate:>9} FAILED: {st.failed.splitlines()[0][:200]}", flush=True)
        return
    srv = [v for k, v in sorted(st.cpu.items()) if k.startswith("srv")]
    srv_s = "+".join(f"{v:.0f}" for v in srv)
    bench = f"{st.cpu.get('sources', 0):.0f}+{st.cpu.get('receivers', 0):.0f}"
    mark = "  PASS" if st.within_goal else "  miss"
    print(
        f"  {st.rate:>9} {st.achieved:>8.0f} {f1(st.p50):>7} {f1(st.p99):>8} {f1(st.pmax):>8} {st.lost:>6} "
        f"{st.duplicates:>4} {f1(st.ack_p99):>8} {st.acked:>6}/{st.sent:<6} {srv_s:>13} "
        f"{f1(st.cpu.get('redis'), '.0f'):>6} {st.cpu.get('postgres', 0):>5.0f} {bench:>10} "
        f"{st.cpu.get('other', 0):>6.0f} {st.lag_p99_ms:>6.1f} {f1(st.per_core, '.0f'):>8}{mark}"
        f"{' kept up' if st.sustained else ''}{' bench-bound' if st.bench_bound else ''}",
        flush=True,
    )
    if st.errors:
        print(f"            ack errors: {st.errors}")


def run_fanout_setup(
    name: str, count: int, with_redis: bool, tmp: Path, env: dict[str, str], redis: Proc | None, args: Any
) -> tuple[list[Step], list[Any]]:
    fan_env = env | FANOUT_ENV | args.extra_env
    tag = f"fanout{count}{'r' if with_redis else ''}"
    servers = start_servers(tmp, fan_env, count, redis.url if with_redis and redis else None, tag)
    workers: list[Worker] = []
    steps: list[Step] = []
    seen: list[Any] = []
    try:
        ids, tokens = asyncio.run(prepare_rooms(servers, args.rooms))
        members = ["clinician", "bench_clin_tv_1", "bench_clin_tv_2", "cardiologist"]
        receivers_cfg = [
            [cid, tokens[m], servers[(i + j) % count].url] for i, cid in enumerate(ids) for j, m in enumerate(members)
        ]
        sources_cfg = [[i, cid, tokens["clinician"], servers[i % count].url] for i, cid in enumerate(ids)]
        receivers = Worker("receivers", {"receivers": receivers_cfg}, tmp / f"receivers-{count}.log")
        workers.append(receivers)
        key_prefix = f"bench-{secrets.token_hex(3)}"
        cfg = {"sources": sources_cfg, "source_file": str(args.source_file), "key_prefix": key_prefix}
        senders = Worker("sources", cfg, tmp / f"sources-{count}.log")
        workers.append(senders)
        seen = receivers.recv(180)["participants_seen"]
        senders.recv(180)
        groups = {f"srv {'AB'[i]}": [sv.pid] for i, sv in enumerate(servers)}
        if with_redis and redis:
            groups["redis"] = [redis.pid]
        groups |= {"sources": [senders.pid], "receivers": [receivers.pid]}
        probe = CpuProbe(groups)
        print(f"\nFan-out, {name}: {args.rooms} rooms x {RECEIVERS_PER_ROOM} receivers", flush=True)
        print(LADDER_HEADER, flush=True)
        misses = 0  # steps in a row that did not keep up
        for rate in args.ladder:
            busy = wait_quiet(probe, args.quiet_wait)
            if busy > 30:
                print(f"            (others kept {busy:.0f} % of a core busy through the {args.quiet_wait:g} s wait)")
            try:
                st = run_step(name, rate, senders, receivers, probe, args)
            except Exception as exc:
                st = Step(name, rate, failed=str(exc))
            steps.append(st)
            print_step(st)
            if st.failed or any(sv.process.poll() is not None for sv in servers):
                break
            misses = 0 if st.sustained else misses + 1
            if misses >= args.stop_after or st.collapsed:
                rest = [r for r in args.ladder if r > rate]
                if rest:
                    print(f"  (stopped climbing: {', '.join(map(str, rest))} not run)")
                break
            settle(servers)
    finally:
        for w in workers:
            w.stop()
        for sv in servers:
            sv.stop()
            bad = sv.problems()
            if bad:
                print(f"  {sv.name} log: {len(bad)} error lines, e.g. {bad[0][:200]}")
        print_gc(servers)
    return steps, seen


def print_gc(servers: list[Proc]) -> None:
    pauses = gc_pauses([sv.log for sv in servers])
    if pauses:
        print(
            f"  full garbage collections that stopped a server > 20 ms: {len(pauses)}, median "
            f"{pct(pauses, 50):.0f} ms, max {max(pauses):.0f} ms (each holds every delivery of that process)"
        )


def ceiling(steps: list[Step]) -> int:
    return max((st.rate for st in steps if st.within_goal), default=0)


def kept_up(steps: list[Step]) -> int:
    return max((st.rate for st in steps if st.sustained), default=0)


# ------------------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    ap.add_argument("--quick", action="store_true", help="small N, few specialists, short ladder (< 2 min)")
    ap.add_argument("--processes", choices=["1", "2", "both", "all"], default="both", help="(default both)")
    ap.add_argument("--part", choices=["pairing", "fanout", "all"], default="all")
    ap.add_argument("--requests", help="N of the pairing rounds (default 10,100,1000; quick 10,50)")
    ap.add_argument("--specialists", type=int, help="cardiologists on call (default 40; quick 10)")
    ap.add_argument("--spec-procs", type=int, default=2, help="bench processes of the specialists (default 2)")
    ap.add_argument("--think", type=float, default=0.3, help="s between an offer and the accept (default 0.3)")
    ap.add_argument("--consult", type=float, default=1.0, help="s in the room before ending (default 1.0)")
    ap.add_argument("--offer-timeout", type=float, default=5.0, help="s an urgent offer rings (>= 5; default 5)")
    ap.add_argument("--ladder", help="deliveries/s (default 500,1000,2000,3000,4000,6000,8000,12000)")
    ap.add_argument("--rooms", type=int, default=40, help="fan-out rooms (default 40)")
    ap.add_argument("--measure", type=float, help="measured window per step, s (default 6; quick 3)")
    ap.add_argument("--warmup", type=float, help="s before the window (default 2; quick 1)")
    ap.add_argument("--grace", type=float, default=1.0, help="sending after the window, s (default 1)")
    ap.add_argument(
        "--stop-after", type=int, default=2, help="stop climbing after this many steps in a row that did not keep up"
    )
    ap.add_argument("--pg-url", default=os.environ.get("TELECONSULT_TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true", help="one JSON line with the figures at the end")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (server and worker logs)")
    ap.add_argument(
        "--gc-freeze",
        action="store_true",
        help="what-if, not the product: each server gc.collect()s and gc.freeze()s its heap 8 s after start",
    )
    ap.add_argument("--profile-servers", metavar="DIR", help="cProfile every server; stats to DIR/<pid>.prof")
    ap.add_argument("--keep-schema", action="store_true", help="do not drop the PostgreSQL schema at the end")
    ap.add_argument("--dump", metavar="FILE", help="append each pairing round's raw client records to FILE (JSON)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cli-batch", help=argparse.SUPPRESS)
    ap.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    ap.add_argument(
        "--at-commit",
        metavar="REV",
        help="run the servers and the CLI from `git archive REV` (default: this working tree, as it is)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        help="before each fan-out step, wait up to this many s for other processes to go quiet (default 5; quick 2)",
    )
    args = ap.parse_args(argv)
    q = args.quick
    args.requests = [int(x) for x in (args.requests or ("10,50" if q else "10,100,1000")).split(",") if x.strip()]
    args.specialists = args.specialists or (10 if q else 40)
    default_ladder = "1000,2000,4000" if q else "500,1000,2000,3000,4000,6000,8000,12000"
    args.ladder = sorted({int(x) for x in (args.ladder or default_ladder).split(",") if x.strip()})
    args.measure = args.measure or (3.0 if q else 6.0)
    args.warmup = args.warmup or (1.0 if q else 2.0)
    if args.quiet_wait is None:
        args.quiet_wait = 2.0 if q else 5.0
    if q and args.rooms == 40:
        args.rooms = 20
    if args.offer_timeout < 5:
        ap.error("--offer-timeout must be >= 5 (the settings' minimum)")
    args.extra_env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("TELECONSULT_"):
            ap.error(f"--server-env takes TELECONSULT_KEY=VALUE, not {item!r}")
        args.extra_env[key] = value
    return args


def code_tree(rev: str | None, tmp: Path) -> str:
    """Where the servers' code comes from, said plainly (others may be editing the working tree)."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    if rev:
        sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
        tree = tmp / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        # What `make setup` adds to a checkout: compiled catalogs, and the npm packages the app serves.
        pybabel = Path(sys.executable).parent / "pybabel"
        for po in (tree / "web" / "translations").glob("*/LC_MESSAGES/*.po"):
            subprocess.run(
                [str(pybabel), "compile", "-D", po.stem, "-i", str(po), "-o", str(po.with_suffix(".mo"))],
                capture_output=True,
                check=True,
            )
        (tree / "node_modules").symlink_to(ROOT / "node_modules")
        TREE[0] = tree
        return f"commit {sha[:10]} ({git('log', '-1', '--format=%s', sha)[:80]}), from git archive"
    changed = [ln[3:] for ln in git("status", "--porcelain").splitlines() if ln[3:].endswith(".py")]
    product = [p for p in changed if p.split("/")[0] in ("teleconsult", "signaling", "web")]
    note = f" + uncommitted changes in {', '.join(product)}" if product else ""
    return f"working tree at {git('rev-parse', '--short=10', 'HEAD')}{note}"


def setups_of(processes: str) -> list[tuple[str, int, bool]]:
    one, one_r, two = ("1 process", 1, False), ("1 process + Redis", 1, True), ("2 processes + Redis", 2, True)
    return {"1": [one], "2": [two], "both": [one, two], "all": [one, one_r, two]}[processes]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.cli_batch:
        return cli_batch_main(args.cli_batch, args.tree)
    t_start = time.monotonic()
    print(
        f"bench/pairing.py {'--quick ' if args.quick else ''}at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{os_cpus()} CPUs shared by the servers, PostgreSQL, Redis, the bench's own worker processes and whatever "
        f"else runs here; loadavg at start: {loadavg()}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="pairing-bench-"))
    print(f"code: {code_tree(args.at_commit, tmp)}", flush=True)
    args.schema = f"bench_pairing_{secrets.token_hex(4)}"
    redis: Proc | None = None
    pairing: list[RoundResult] = []
    fanout: dict[str, list[Step]] = {}
    seen: dict[str, list[Any]] = {}
    try:
        hooks = {"BENCH_GC_FREEZE": "8"} if args.gc_freeze else {}
        if args.profile_servers:
            Path(args.profile_servers).mkdir(parents=True, exist_ok=True)
            hooks["BENCH_PROFILE"] = str(Path(args.profile_servers).resolve())
        env = server_env(args.pg_url, args.schema, hooks, tmp)
        pair_env = env | {
            f"TELECONSULT_OFFER_TIMEOUT_{u}_S": f"{args.offer_timeout:g}" for u in ("EMERGENCY", "URGENT", "ROUTINE")
        }
        pair_env |= args.extra_env
        t = time.monotonic()
        run_cli(env, "migrate")
        run_cli(env, "seed", "--demo")
        specs, clinicians, cli_s = create_people(env, tmp, args.specialists)
        print(
            f"setup: schema {args.schema} migrated and seeded in {time.monotonic() - t - cli_s:.1f} s; "
            f"{len(specs)} cardiologists + rosters + {len(clinicians) - 2} clinicians via teleconsult.cli in "
            f"{cli_s:.1f} s",
            flush=True,
        )
        redis = start_redis(tmp)
        if args.part in ("pairing", "all"):
            pairing = run_pairing(tmp, pair_env, redis, (specs, clinicians), args)
        if args.part in ("fanout", "all"):
            source = load_source(str(RECORD), 1, 250.0, 25.0, max_frames=2000)
            args.source_file = tmp / "source.pickle"
            args.source_file.write_bytes(pickle.dumps(source))
            frame_bytes = len(source.frame(1000, 1000))
            print(
                f"\nFan-out: stream.frame, 1 lead x 10 samples ({frame_bytes} B), {RECEIVERS_PER_ROOM} deliveries "
                f"per frame; warm-up {args.warmup:g} s, window {args.measure:g} s, grace {args.grace:g} s; "
                f"server env {' '.join(f'{k}={v}' for k, v in (FANOUT_ENV | args.extra_env).items())}",
                flush=True,
            )
            for name, count, with_redis in setups_of(args.processes):
                fanout[name], seen[name] = run_fanout_setup(name, count, with_redis, tmp, env, redis, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"bench could not run: {exc}", file=sys.stderr)
        traceback.print_exc()
        return 1
    finally:
        if redis is not None:
            redis.stop()
        try:
            if args.keep_schema:
                print(f"kept schema {args.schema}")
            else:
                drop_pg_schema(args.pg_url, args.schema)
        except Exception as exc:
            print(f"could not drop schema {args.schema}: {exc}", file=sys.stderr)
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    summarize(pairing, fanout, seen, args)
    print(f"\nloadavg at end: {loadavg()}; total {time.monotonic() - t_start:.0f} s")
    if args.json:
        print(
            json.dumps(
                {
                    "pairing": [r.__dict__ | {"lost": r.lost, "doubles": r.doubles} for r in pairing],
                    "fanout": {k: [st.__dict__ | {"lost": st.lost} for st in v] for k, v in fanout.items()},
                },
                default=str,
            )
        )
    return 0


def summarize(pairing: list[RoundResult], fanout: dict[str, list[Step]], seen: dict[str, list[Any]], args: Any) -> None:
    print("\nSummary")
    for r in pairing:
        if r.n >= QUEUE_GOAL:
            ok = r.lost == 0 and r.doubles == 0 and r.pending_left == 0 and r.created == r.n
            print(
                f"  {r.n:,} queued requests: paired {r.completed}, lost {r.lost}, double offers {r.doubles} — "
                f"{'PASS' if ok else 'FAIL'} (drain {r.drain_s or 0:.1f} s; request -> joined p50 "
                f"{s(r.t_joined, 50)} s, p99 {s(r.t_joined, 99)} s)"
            )
    if pairing and all(r.n < QUEUE_GOAL for r in pairing):
        print(f"  goal ({QUEUE_GOAL:,} queued requests) not run: largest N {max(r.n for r in pairing)}")
    ceilings = {name: ceiling(steps) for name, steps in fanout.items()}
    for name, steps in fanout.items():
        top = " (top of the ladder)" if ceilings[name] and ceilings[name] == max(st.rate for st in steps) else ""
        print(f"  fan-out ceiling, {name}: {ceilings[name] or 'none of the ladder'} deliveries/s{top}")
        if seen.get(name):
            most: dict[int, int] = {}
            for cid, others in seen[name]:
                most[cid] = max(most.get(cid, 0), others)
            spread = ", ".join(f"{k} others: {v} rooms" for k, v in sorted(Counter(most.values()).items()))
            print(
                f"      room.join acks: the most participants any member of a room was told about: {spread} "
                f"(every room has {RECEIVERS_PER_ROOM} members)"
            )
    one, two = ceilings.get("1 process"), ceilings.get("2 processes + Redis")
    if one is not None and two is not None:
        verdict = "PASS" if one and two / one >= RATIO_GOAL else "MISS"
        ratio = f"{two / one:.2f}x" if one else "undefined (1 process met the goal at no step)"
        print(
            f"  ceiling ratio, 2 processes + Redis / 1 process: {two} / {one} = {ratio} "
            f"(goal >= {RATIO_GOAL}x): {verdict}"
        )
    kept = {name: kept_up(steps) for name, steps in fanout.items()}
    if kept:
        print("  kept up (every delivery, >= 95 % of the offered rate, p50 <= 50 ms; the tail ignored):")
        for name, rate in kept.items():
            best = next((st for st in fanout[name] if st.rate == rate), None)
            cost = f", {best.per_core:.0f} deliveries/s per server core there" if best and best.per_core else ""
            print(f"      {name}: {rate or 'none of the ladder'} deliveries/s{cost}")
        k1, k2 = kept.get("1 process"), kept.get("2 processes + Redis")
        if k1 and k2:
            print(f"      ratio {k2 / k1:.2f}x")
    common = [
        (a, b)
        for a in fanout.get("1 process", [])
        for b in fanout.get("2 processes + Redis", [])
        if a.rate == b.rate and a.sustained and b.sustained and a.per_core and b.per_core
    ]
    quiet = [(a, b) for a, b in common if a.cpu.get("other", 0) < 30 and b.cpu.get("other", 0) < 30]
    if quiet:
        a, b = quiet[-1]
        print(
            f"  server CPU at {a.rate} deliveries/s, machine otherwise quiet: 1 process {a.server_cpu:.0f} % of a "
            f"core, 2 processes + Redis {b.server_cpu:.0f} % in all (+ redis-server {b.cpu.get('redis', 0):.0f} %)"
        )


if __name__ == "__main__":
    sys.exit(main())
