"""Several `teleconsult serve` processes on one PostgreSQL schema, with a Redis of their own.

The Redis is started by the test (``redis-server --port N --save ''``), never the shared one on 6379, so a test
may stop and restart it. The schema is fresh per cluster and dropped at the end. Missing PostgreSQL or
redis-server fails the test loudly: these tests are never skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import socketio
from aiohttp import ClientSession, ClientTimeout
from sqlalchemy import text

from teleconsult.seed import DEMO_PASSWORD
from teleconsult.storage.db import create_engine
from tests.e2e.conftest import ROOT, free_port

START_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 20_000

# Every event the server pushes (docs/signaling.md, "Server to client").
SERVER_EVENTS = (
    "room.peer_joined",
    "room.peer_left",
    "rtc.signal",
    "note.added",
    "consultation.updated",
    "room.closed",
    "room.replaced",
    "session.expired",
    "stream.opened",
    "stream.frame",
    "stream.closed",
    "vitals.added",
    "stream.heart_rate",
    "pairing.offer",
    "pairing.offer_closed",
    "pairing.status",
    "pairing.escalated",
    "presence.updated",
)


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, wait_s: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# -- Redis ------------------------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port, nothing saved to disk."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: the cluster tests start their own Redis "
                "(Debian package redis-server; `apt-get install redis-server`).",
                pytrace=False,
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited at once:\n{self.log.read_text()}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"redis-server did not answer PING:\n{self.log.read_text()}")

    def _client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, retry_on_timeout=False)

    def ping(self) -> bool:
        try:
            with self._client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def subscribers(self) -> int:
        """Connections subscribed to a channel: one per server process whose Socket.IO manager listens."""
        try:
            with self._client() as client:
                return sum(1 for c in client.client_list() if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0)
        except redis.RedisError:
            return 0

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)


# -- server processes -------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One `teleconsult serve` process; it can be stopped, killed and started again on the same port."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as out:
            out.write(f"\n===== {self.name}: serve on port {self.port} =====\n".encode())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "teleconsult.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(f"server {self.name} exited:\n{tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server {self.name} did not answer /healthz in {timeout} s:\n{tail(self.log)}")

    def start(self) -> None:
        self.spawn()
        self.wait_healthy()

    def stop(self) -> None:
        """A clean shutdown: the process releases its presence leases."""
        _stop(self.process, signal.SIGTERM)

    def kill(self) -> None:
        """As a crash would: SIGKILL, no shutdown handler runs."""
        _stop(self.process, signal.SIGKILL)


def tail(path: Path, start: int = 0, limit: int = LOG_TAIL_CHARS) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    data = path.read_bytes()[start:].decode(errors="replace")
    return data if len(data) <= limit else "…" + data[-limit:]


@dataclass
class Cluster:
    directory: Path
    database_url: str
    schema: str
    redis: RedisServer
    env: dict[str, str]
    nodes: dict[str, Node] = field(default_factory=dict)

    @classmethod
    def start(cls, directory: Path, database_url: str, names: tuple[str, ...] = ("A", "B"), **settings: str) -> Cluster:
        """Redis, a fresh schema migrated and seeded once, then the server processes (started together)."""
        redis = RedisServer(directory / "redis")
        schema = f"cluster_{uuid.uuid4().hex[:12]}"
        env = {
            **os.environ,
            "TELECONSULT_DATABASE_URL": database_url,
            "TELECONSULT_DATABASE_SCHEMA": schema,
            "TELECONSULT_REDIS_URL": redis.url,
            **{f"TELECONSULT_{k.upper()}": v for k, v in settings.items()},
        }
        cluster = cls(directory, database_url, schema, redis, env)
        try:
            redis.start()
            done = cluster.cli("migrate")
            assert done.returncode == 0, f"teleconsult migrate failed:\n{done.stdout}\n{done.stderr}"
            # The servers need the tables, not the demo rows: seed while they start (the machine may be busy).
            seed = subprocess.Popen(
                [sys.executable, "-m", "teleconsult.cli", "seed", "--demo"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
            for name in names:
                cluster.nodes[name] = Node(name, env, directory / f"server-{name}.log")
            for node in cluster.nodes.values():
                node.spawn()
            output, _ = seed.communicate(timeout=120)
            assert seed.returncode == 0, f"teleconsult seed --demo failed:\n{output.decode(errors='replace')}"
            for node in cluster.nodes.values():
                node.wait_healthy()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def any_url(self) -> str:
        """A process that is running, for the HTTP calls any of them can answer."""
        return next(n.url for n in self.nodes.values() if n.running)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([sys.executable, "-m", "teleconsult.cli", *args], self.env)

    def ensure_up(self) -> None:
        """Whatever a previous test stopped or killed runs again."""
        if not self.redis.running:
            self.redis.start()
        stopped = [n for n in self.nodes.values() if not n.running]
        for node in stopped:
            node.spawn()
        for node in stopped:
            node.wait_healthy()

    def log_marks(self) -> dict[Path, int]:
        paths = [n.log for n in self.nodes.values()] + [self.redis.log]
        return {p: p.stat().st_size if p.exists() else 0 for p in paths}

    def logs_since(self, marks: dict[Path, int]) -> str:
        return "\n".join(f"----- {p.name} -----\n{tail(p, marks.get(p, 0))}" for p in marks)

    def close(self) -> None:
        for node in self.nodes.values():
            node.kill()
        self.redis.stop()
        asyncio.run(_drop_schema(self.database_url, self.schema))

    # -- the shared database, read directly by the tests ------------------------------------------------------

    async def query(self, sql: str, **params: Any) -> list[Any]:
        engine = create_engine(self.database_url, self.schema)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(sql), params)).all())
        finally:
            await engine.dispose()


async def _drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


# -- clients ----------------------------------------------------------------------------------------------------


async def api(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession(timeout=ClientTimeout(total=15)) as http:
        async with http.request(method, f"{base}{path}", json=body, headers=headers) as resp:
            data = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, data


async def token_for(base: str, username: str) -> str:
    status, body = await api(base, "POST", "/api/v1/auth/token", body={"username": username, "password": DEMO_PASSWORD})
    assert status == 201, body
    return str(body["token"])


class Client:
    """A python-socketio client that keeps every event the server pushes, to wait on and to assert on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._arrived = asyncio.Condition()
        for event in SERVER_EVENTS:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Callable[..., Any]:
        async def record(data: Any = None) -> None:
            async with self._arrived:
                self.events[event].append(data)
                self._arrived.notify_all()

        return record

    async def connect(self, url: str, token: str, timeout: float = 10) -> Client:
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=timeout)
        return self

    async def call(self, event: str, payload: Any, timeout: float = 10) -> Any:
        return await self.sio.call(event, payload, timeout=timeout)

    async def ok(self, event: str, payload: Any, timeout: float = 10) -> Any:
        ack = await self.call(event, payload, timeout)
        assert isinstance(ack, dict) and ack.get("ok"), f"{self.name}: {event} refused: {ack}"
        return ack

    async def wait_for(self, event: str, where: Callable[[Any], bool] = lambda _: True, timeout: float = 10) -> Any:
        """The first ``event`` received (now or later) that satisfies ``where``."""

        def found() -> Any:
            return next((e for e in self.events[event] if where(e)), None)

        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: found() is not None)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no matching {event} within {timeout} s; got {event}: {self.events[event]!r}"
            ) from None
        return found()

    def matching(self, event: str, where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [e for e in self.events[event] if where(e)]

    async def close(self) -> None:
        if self.sio.connected:
            try:
                async with asyncio.timeout(5):
                    await self.sio.disconnect()
            except TimeoutError:
                pass


async def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; fail with ``what`` after ``timeout``."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = check()
                if asyncio.iscoroutine(last):
                    last = await last
                if last:
                    return last
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})") from None
