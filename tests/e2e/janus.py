"""Start the Debian `janus` on loopback for a test, with a config set of our own in a temp dir.

Only what the conference needs is loaded: the VideoRoom plugin and the plain HTTP transport (bound to
127.0.0.1 on a free port). The plugin and transport folders are temp dirs holding symlinks to just those two
libraries, so Janus starts fast and never opens a WebSocket, MQTT, RabbitMQ or Unix-socket listener. No STUN
server (no internet here; Janus only needs its host candidates), IPv6 candidates off, mDNS candidates
dropped, RTP on a small port range of its own. Every Janus API request needs the ``api_secret``; VideoRoom
rooms can only be created with the ``admin_key``. Both are random per run and only our server knows them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

LIB_DIRS = [Path("/usr/lib/x86_64-linux-gnu/janus"), Path("/usr/lib/aarch64-linux-gnu/janus"), Path("/usr/lib/janus")]
START_TIMEOUT_S = 15.0


@dataclass
class Janus:
    url: str  # http://127.0.0.1:<port>/janus
    api_secret: str
    admin_key: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def janus_path() -> str:
    path = shutil.which("janus")
    if not path:
        pytest.fail(
            "Janus is not installed (no `janus` command); run `make setup` (it apt-get installs the Debian `janus`)",
            pytrace=False,
        )
    return path


def janus_lib_dir() -> Path:
    for candidate in LIB_DIRS:
        if (candidate / "plugins" / "libjanus_videoroom.so").exists():
            return candidate
    pytest.fail(f"Janus's VideoRoom plugin was not found under {', '.join(map(str, LIB_DIRS))}", pytrace=False)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, *, http_port: int, api_secret: str, admin_key: str, rtp_ports: tuple[int, int]) -> Path:
    """The config folder for `janus -F`: core, HTTP transport and VideoRoom plugin configs, nothing else."""
    lib = janus_lib_dir()
    conf, plugins, transports, empty = tmp / "conf", tmp / "plugins", tmp / "transports", tmp / "none"
    for folder in (conf, plugins, transports, empty):
        folder.mkdir(parents=True, exist_ok=True)
    (plugins / "libjanus_videoroom.so").symlink_to(lib / "plugins" / "libjanus_videoroom.so")
    (transports / "libjanus_http.so").symlink_to(lib / "transports" / "libjanus_http.so")
    (conf / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{conf}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{empty}"
    loggers_folder = "{empty}"
    debug_level = 4
    api_secret = "{api_secret}"
    session_timeout = 60
    server_name = "teleconsult-test"
    protected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var"]
}}
certificates: {{
}}
media: {{
    ipv6 = false
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    nice_debug = false
    ignore_mdns = true
    ice_ignore_list = "vmnet"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
    broadcast = false
}}
"""
    )
    (conf / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
"""
    )
    (conf / "janus.plugin.videoroom.jcfg").write_text(
        f"""general: {{
    admin_key = "{admin_key}"
    lock_rtp_forward = true
    events = false
}}
"""
    )
    return conf


def info_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/info", timeout=0.5) as response:
            return json.loads(response.read()).get("janus") == "server_info"
    except (OSError, urllib.error.URLError, ValueError):
        return False


@contextmanager
def run_janus(tmp: Path) -> Iterator[Janus]:
    binary = janus_path()
    port = free_tcp_port()
    first_rtp = 30000 + secrets.randbelow(90) * 100  # inside 30000..38999, away from coturn's 40000..47999
    api_secret, admin_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    conf = write_config(
        tmp, http_port=port, api_secret=api_secret, admin_key=admin_key, rtp_ports=(first_rtp, first_rtp + 99)
    )
    log = tmp / "janus.log"
    # -F: our config folder only, never /etc/janus. -o: no colour codes in the log.
    process = subprocess.Popen(
        [binary, "-F", str(conf), "-C", str(conf / "janus.jcfg"), "-o"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    janus = Janus(f"http://127.0.0.1:{port}/janus", api_secret, admin_key, log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info_answers(janus.url):
            if process.poll() is not None:
                pytest.fail(f"janus exited with {process.returncode}:\n{janus.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"janus did not answer GET {janus.url}/info:\n{janus.log_tail()}", pytrace=False)
            time.sleep(0.05)
        yield janus
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
