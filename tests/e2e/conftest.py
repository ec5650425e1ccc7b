"""End-to-end fixtures: the real `teleconsult` server in its own process, real headless Chromium (Debian)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from teleconsult.seed import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Debian chromium is not installed; run `make setup` (apt-get install chromium)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "teleconsult.cli", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )


def start_server(tmp_path: Path, extra_env: dict[str, str] | None = None, serve_args: tuple[str, ...] = ()) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "TELECONSULT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/e2e.sqlite3",
        "TELECONSULT_PORT": str(port),
        **(extra_env or {}),
    }
    env.pop("TELECONSULT_REDIS_URL", None)
    for args in (["migrate"], ["seed", "--demo"]):
        done = subprocess.run(
            [sys.executable, "-m", "teleconsult.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "teleconsult.cli", "serve", "--port", str(port), *serve_args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return Server(url, env, process, log)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server did not answer /healthz: {log.read_text()}")


def start_again(server: Server) -> Server:
    """Start a server whose process has died again, on the same port and database."""
    assert server.process.poll() is not None, "stop or kill the server first"
    port = server.url.rsplit(":", 1)[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "teleconsult.cli", "serve", "--port", port],
        env=server.env,
        stdout=server.log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    restarted = Server(server.url, server.env, process, server.log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return restarted
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server did not come back: {server.log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path)
    yield running
    stop_server(running)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        yield instance
        await instance.close()


async def login(browser: Browser, server: Server, username: str, locale: str = "en-US") -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale=locale, permissions=["camera", "microphone"])
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(f"{server.url}/login")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(f"{server.url}/dashboard")
    return context, page
