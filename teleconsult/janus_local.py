"""A Janus SFU of our own on loopback, for `teleconsult serve --with-janus` (what `make run` uses) and the tests.

Only what conferences need is loaded: the VideoRoom plugin and the plain HTTP transport (bound to 127.0.0.1).
The plugin and transport folders hold symlinks to just those two libraries of the Debian `janus` package, so
Janus starts fast and opens no other listener. No STUN server (host candidates only: same machine or LAN;
production uses a configured Janus, docs/sfu.md and docs/deploy.md), IPv6 candidates off, mDNS candidates
dropped, RTP on a small port range. Every API request needs the random ``api_secret`` and rooms can only be
created with the random ``admin_key``; only our server knows them.
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
from dataclasses import dataclass
from pathlib import Path

LIB_DIRS = [Path("/usr/lib/x86_64-linux-gnu/janus"), Path("/usr/lib/aarch64-linux-gnu/janus"), Path("/usr/lib/janus")]
START_TIMEOUT_S = 15.0


class JanusNotAvailable(RuntimeError):
    pass


@dataclass
class LocalJanus:
    url: str  # http://127.0.0.1:<port>/janus
    api_secret: str
    admin_key: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def janus_binary() -> str:
    path = shutil.which("janus")
    if not path:
        raise JanusNotAvailable("Janus is not installed (no `janus` command); `make setup` installs Debian's janus")
    return path


def janus_lib_dir() -> Path:
    for candidate in LIB_DIRS:
        if (candidate / "plugins" / "libjanus_videoroom.so").exists():
            return candidate
    raise JanusNotAvailable(f"Janus's VideoRoom plugin was not found under {', '.join(map(str, LIB_DIRS))}")


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
    for link, target in (
        (plugins / "libjanus_videoroom.so", lib / "plugins" / "libjanus_videoroom.so"),
        (transports / "libjanus_http.so", lib / "transports" / "libjanus_http.so"),
    ):
        link.unlink(missing_ok=True)
        link.symlink_to(target)
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
    server_name = "teleconsult"
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
    for path in conf.iterdir():  # the secrets are in there
        path.chmod(0o600)
    return conf


def info_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/info", timeout=0.5) as response:
            return bool(json.loads(response.read()).get("janus") == "server_info")
    except (OSError, urllib.error.URLError, ValueError):
        return False


def start(
    folder: Path,
    *,
    port: int | None = None,
    first_rtp_port: int | None = None,
    api_secret: str | None = None,
    admin_key: str | None = None,
) -> LocalJanus:
    """Start Janus with a fresh config in ``folder``; wait until its API answers. Raises JanusNotAvailable.
    Random secrets unless given (a restart with the same ones, as an operator's restart would keep them)."""
    binary = janus_binary()
    port = port or free_tcp_port()
    first_rtp = first_rtp_port or 30000 + secrets.randbelow(90) * 100  # away from coturn's 40000..47999
    api_secret = api_secret or secrets.token_urlsafe(24)
    admin_key = admin_key or secrets.token_urlsafe(24)
    folder.mkdir(parents=True, exist_ok=True)
    conf = write_config(
        folder, http_port=port, api_secret=api_secret, admin_key=admin_key, rtp_ports=(first_rtp, first_rtp + 99)
    )
    log = folder / "janus.log"
    # -F: our config folder only, never /etc/janus. -o: no colour codes in the log.
    process = subprocess.Popen(
        [binary, "-F", str(conf), "-C", str(conf / "janus.jcfg"), "-o"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    janus = LocalJanus(f"http://127.0.0.1:{port}/janus", api_secret, admin_key, log, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not info_answers(janus.url):
        if process.poll() is not None:
            raise JanusNotAvailable(f"janus exited with {process.returncode}:\n{janus.log_tail()}")
        if time.monotonic() > deadline:
            janus.stop()
            raise JanusNotAvailable(f"janus did not answer GET {janus.url}/info:\n{janus.log_tail()}")
        time.sleep(0.05)
    return janus
