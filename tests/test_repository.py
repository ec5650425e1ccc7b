"""Checks on the repository itself: the compose file is valid Compose, the deployment it describes holds
together (replicas, sticky proxy, TURN secret, the coturn configuration run for real), and the lint gates hold.

Each tool runs from the same virtual environment as pytest, so nothing here depends on PATH.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol
from ruamel.yaml import YAML
from sqlalchemy.engine.url import make_url

from teleconsult.domain.turn import credentials
from teleconsult.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
TURN_CONF = ROOT / "deploy" / "turnserver.conf"


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    # The Compose specification schema ships inside check-jsonschema: no network needed.
    return run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_compose(ROOT / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text('services:\n  app:\n    image: 5\n    ports: "x"\n')
    result = check_compose(broken)
    assert result.returncode != 0
    assert "services.app" in result.stdout + result.stderr


def test_import_layering_contracts_hold() -> None:
    result = run(BIN / "lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing() -> None:
    result = run(BIN / "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


# -- compose.yaml: the scale-out deployment ------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    # ruamel.yaml comes with check-jsonschema; like Compose, it resolves the `<<: *app` merge keys.
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return data


def app_replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if "serve" in svc.get("command", [])}


def test_compose_runs_two_app_replicas_on_postgresql_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = app_replicas(load_compose())
    assert sorted(replicas) == ["app1", "app2"]
    for name, svc in replicas.items():
        env = svc["environment"]
        db_url = make_url(env["TELECONSULT_DATABASE_URL"])
        assert (db_url.drivername, db_url.host, db_url.password) == ("postgresql+asyncpg", "db", None), name
        assert env["TELECONSULT_DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
        assert env["TELECONSULT_REDIS_URL"].startswith("redis://redis:6379/"), name
        assert "http://127.0.0.1:8080/healthz" in " ".join(svc["healthcheck"]["test"]), name
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        # The application itself accepts this environment (JSON list of TURN URLs, booleans).
        for key in [k for k in os.environ if k.startswith("TELECONSULT_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        assert settings.redis_url == env["TELECONSULT_REDIS_URL"]
        assert settings.cookie_secure is True
        assert settings.turn_urls and all(url.startswith("turn:") for url in settings.turn_urls)
        assert {url.rsplit("transport=", 1)[-1] for url in settings.turn_urls} == {"udp", "tcp"}


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = load_compose()["services"]
    assert {"proxy", "coturn", "db", "redis"} <= services.keys()
    assert services["db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name, svc in services.items():
        if svc.get("restart") == "no":  # one-shot jobs (migrate)
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_proxy_fronts_every_replica_and_waits_for_them() -> None:
    compose = load_compose()
    proxy = compose["services"]["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert "8080:8080" in proxy["ports"]
    for name in app_replicas(compose):
        assert proxy["depends_on"][name]["condition"] == "service_healthy"
        assert "ports" not in compose["services"][name], f"{name} must be reached through the proxy only"
    coturn = compose["services"]["coturn"]
    assert "./deploy/turnserver.conf:/etc/coturn/turnserver.conf:ro" in coturn["volumes"]


# -- deploy/nginx.conf ---------------------------------------------------------------------------------------


def nginx_config() -> str:
    return re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())


def nginx_block(config: str, head: str) -> str:
    """The body of the first `head { ... }` block (the blocks looked at here have no nested braces)."""
    match = re.search(re.escape(head) + r"\s*\{([^{}]*)\}", config)
    assert match, f"no `{head}` block in {NGINX_CONF.name}"
    return match.group(1)


def upstream_of(config: str, location: str) -> str:
    target = re.search(r"proxy_pass\s+http://([\w.-]+);", nginx_block(config, f"location {location}"))
    assert target, f"location {location} does not proxy to an upstream"
    return nginx_block(config, f"upstream {target.group(1)}")


def test_nginx_sends_every_socketio_session_to_one_replica() -> None:
    config = nginx_config()
    replicas = sorted(app_replicas(load_compose()))
    for location in ("/socket.io/", "/"):
        servers = re.findall(r"^\s*server\s+([\w.-]+):8080\b", upstream_of(config, location), re.M)
        assert sorted(servers) == replicas, location
    # Long-polling needs every request of a session on the replica that created it: hash on a key that
    # stays the same for the whole session, the session cookie (the client address when there is none).
    sticky = re.search(r"^\s*hash\s+\$(\w+)\s+consistent;", upstream_of(config, "/socket.io/"), re.M)
    assert sticky, "the Socket.IO upstream is not sticky"
    cookie = Settings.model_fields["session_cookie_name"].default
    key_map = nginx_block(config, f"map $cookie_{cookie} ${sticky.group(1)}")
    assert re.search(r"''\s+\$remote_addr;", key_map)
    assert re.search(rf"default\s+\$cookie_{cookie};", key_map)


def test_nginx_passes_websocket_upgrades_and_outlasts_the_ping_interval() -> None:
    config = nginx_config()
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade\s*\{[^}]*default\s+upgrade;", config)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", config)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", config)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", config)
    # Engine.IO checks Origin against the Host header: it must keep the port.
    assert re.search(r"proxy_set_header\s+Host\s+\$http_host;", config)
    assert re.search(r"client_max_body_size\s+1m;", config)
    socketio = nginx_block(config, "location /socket.io/")
    read_timeout = re.search(r"proxy_read_timeout\s+(\d+)s;", socketio)
    assert read_timeout
    fields = Settings.model_fields
    assert int(read_timeout.group(1)) > 2 * (fields["ping_interval_s"].default + fields["ping_timeout_s"].default)


# -- TURN: one secret for the app replicas and coturn --------------------------------------------------------


def turn_options(text: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            options.setdefault(key, []).append(value)
    return options


def coturn_start_script(compose: dict[str, Any]) -> str:
    coturn = compose["services"]["coturn"]
    assert coturn["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = coturn["command"]
    # Compose interpolates $VAR from the operator's shell: every $ meant for the container is written $$.
    assert "$" not in script.replace("$$", ""), "a single $ would be interpolated by Compose"
    return str(script).replace("$$", "$")


def test_the_turn_secret_reaches_both_replicas_and_coturn_from_one_file() -> None:
    compose = load_compose()
    assert compose["secrets"]["turn_secret"] == {"file": "./secrets/turn_secret"}
    for name, svc in app_replicas(compose).items():
        assert "turn_secret" in svc["secrets"], name
        assert svc["environment"]["TELECONSULT_TURN_SECRET_FILE"] == "/run/secrets/turn_secret", name
    assert "turn_secret" in compose["services"]["coturn"]["secrets"]
    assert "/run/secrets/turn_secret" in coturn_start_script(compose)
    options = turn_options(TURN_CONF.read_text())
    assert "use-auth-secret" in options
    assert "static-auth-secret" not in options, "the secret belongs in secrets/turn_secret, not in the repository"


@dataclass
class RunningTurn:
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    generated_config: Path


def free_udp_and_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def answers_stun(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.2)
        udp.sendto(bytes(request), ("127.0.0.1", port))
        try:
            reply = stun.parse_message(udp.recv(2048))
        except (TimeoutError, ConnectionRefusedError):
            return False
    return reply.transaction_id == request.transaction_id


@pytest.fixture
def coturn_as_composed(tmp_path: Path) -> Iterator[RunningTurn]:
    """coturn (the Debian package) started by the compose service's own start script, on loopback."""
    secret = secrets.token_urlsafe(32)
    (tmp_path / "turn_secret").write_text(secret + "\n")
    port = free_udp_and_tcp_port()
    config = TURN_CONF.read_text()
    assert "\nlistening-port=3478\n" in config
    config = config.replace("\nlistening-port=3478\n", f"\nlistening-port={port}\n")
    (tmp_path / "turnserver.conf").write_text(config + "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\n")
    (tmp_path / "run").mkdir()
    script = coturn_start_script(load_compose())
    for inside, outside in (
        ("/etc/coturn/turnserver.conf", tmp_path / "turnserver.conf"),
        ("/run/secrets/turn_secret", tmp_path / "turn_secret"),
        ("/run/coturn", tmp_path / "run"),
    ):
        assert inside in script
        script = script.replace(inside, str(outside))
    log = (tmp_path / "coturn.log").open("wb")
    process = subprocess.Popen(["/bin/sh", "-c", script], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not answers_stun(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("coturn did not start:\n" + (tmp_path / "coturn.log").read_text(errors="replace"))
        yield RunningTurn(port, secret, process, tmp_path / "run" / "turnserver.conf")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def allocate(port: int, username: str, password: str) -> TurnClientUdpProtocol:
    server = ("127.0.0.1", port)
    _, client = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(server, username, password, 600, 300), remote_addr=server
    )
    try:
        await asyncio.wait_for(client.connect(), 10)
    except BaseException:
        client.transport.close()
        raise
    return client


async def refusal(call: Any) -> int:
    with pytest.raises(stun.TransactionFailed) as failed:
        await asyncio.wait_for(call, 10)
    return int(failed.value.response.attributes["ERROR-CODE"][0])


def test_coturn_as_composed_keeps_the_secret_off_the_command_line(coturn_as_composed: RunningTurn) -> None:
    turn = coturn_as_composed
    # `exec` in the start script: the process is turnserver itself, its arguments visible to anyone on the host.
    command_line = Path(f"/proc/{turn.process.pid}/cmdline").read_bytes().decode(errors="replace")
    assert command_line.startswith("turnserver\0")
    assert turn.secret not in command_line
    # The configuration copy that holds the secret is readable by coturn's user only.
    assert stat.S_IMODE(turn.generated_config.stat().st_mode) == 0o600
    assert f"static-auth-secret={turn.secret}" in turn.generated_config.read_text().splitlines()


async def test_coturn_as_composed_accepts_app_credentials_and_relays_to_public_peers_only(
    coturn_as_composed: RunningTurn,
) -> None:
    turn = coturn_as_composed
    now = int(time.time())
    client = await allocate(turn.port, *credentials(turn.secret, 7, now, 600))
    try:
        assert client.relayed_address is not None
        channels = iter(range(0x4000, 0x4100))
        # A credential holder must not reach the hospital network, this host or a cloud metadata service.
        for private in ("10.0.0.5", "172.16.0.5", "192.168.1.5", "100.64.0.1", "127.0.0.1", "169.254.169.254"):
            assert await refusal(client.channel_bind(next(channels), (private, 5432))) == 403, private
        await asyncio.wait_for(client.channel_bind(next(channels), ("8.8.8.8", 3478)), 10)
    finally:
        await client.delete()

    assert await refusal(allocate(turn.port, *credentials("not-the-secret", 7, now, 600))) == 401
    assert await refusal(allocate(turn.port, *credentials(turn.secret, 7, now - 1200, 600))) == 401


# -- the Janus SFU as composed ------------------------------------------------------------------------------------

JANUS_DIR = ROOT / "deploy" / "janus"


def janus_start_script(compose: dict[str, Any]) -> str:
    janus = compose["services"]["janus"]
    assert janus["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = janus["command"]
    assert "$" not in script.replace("$$", "").replace("\\\n", ""), "a single $ would be interpolated by Compose"
    return str(script).replace("$$", "$")


def test_the_janus_secrets_reach_both_replicas_and_janus_only_as_files() -> None:
    compose = load_compose()
    for secret in ("janus_api_secret", "janus_admin_key"):
        assert compose["secrets"][secret] == {"file": f"./secrets/{secret}"}
        assert secret in compose["services"]["janus"]["secrets"]
        assert f"/run/secrets/{secret}" in janus_start_script(compose)
    for name, svc in app_replicas(compose).items():
        env = svc["environment"]
        assert env["TELECONSULT_JANUS_URL"] == "http://janus:8088/janus", name
        assert env["TELECONSULT_JANUS_API_SECRET_FILE"] == "/run/secrets/janus_api_secret", name
        assert env["TELECONSULT_JANUS_ADMIN_KEY_FILE"] == "/run/secrets/janus_admin_key", name
        assert {"janus_api_secret", "janus_admin_key"} <= set(svc["secrets"]), name
    # The HTTP API stays on the Compose network: only the media ports (UDP) are published.
    janus = compose["services"]["janus"]
    assert all(str(p).endswith("/udp") for p in janus["ports"])
    for path in JANUS_DIR.glob("*.jcfg"):
        text = path.read_text()
        assert not re.search(r'(api_secret|admin_key)\s*=\s*"(?!@)', text), f"a secret in {path.name}"


def test_janus_configured_as_composed_starts_and_demands_its_secrets(tmp_path: Path) -> None:
    """The deploy configuration, rendered the way the compose start script renders it (folders and ports
    moved to this test's own), runs the Debian janus: the API answers only with the api secret, and the
    RTP range announced matches the ports compose publishes."""
    compose = load_compose()
    script = janus_start_script(compose)
    placeholders = set(re.findall(r"@[A-Z_]+@", " ".join(p.read_text() for p in JANUS_DIR.glob("*.jcfg"))))
    assert placeholders == {"@API_SECRET@", "@ADMIN_KEY@", "@PUBLIC_IP@"}
    assert all(p in script for p in placeholders), "the start script fills in every placeholder"
    rtp = re.search(r'rtp_port_range = "(\d+)-(\d+)"', (JANUS_DIR / "janus.jcfg").read_text())
    assert rtp is not None
    published = {str(p) for p in compose["services"]["janus"]["ports"]}
    assert published == {f"{rtp[1]}-{rtp[2]}:{rtp[1]}-{rtp[2]}/udp"}

    from teleconsult.janus_local import free_tcp_port, info_answers, janus_binary, janus_lib_dir

    lib, conf = janus_lib_dir(), tmp_path / "conf"
    for folder, library in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / library).symlink_to(lib / folder / library)
    (tmp_path / "none").mkdir()
    conf.mkdir()
    port, api_secret = free_tcp_port(), secrets.token_urlsafe(24)
    values = {"@API_SECRET@": api_secret, "@ADMIN_KEY@": secrets.token_urlsafe(24), "@PUBLIC_IP@": "127.0.0.1"}
    for path in JANUS_DIR.glob("*.jcfg"):
        text = path.read_text().replace("/opt/janus", str(tmp_path)).replace("/run/janus", str(conf))
        text = text.replace("port = 8088", f'port = {port}\n    ip = "127.0.0.1"')
        for key, value in values.items():
            text = text.replace(key, value)
        (conf / path.name).write_text(text)
    log = tmp_path / "janus.log"
    process = subprocess.Popen(
        [janus_binary(), "-F", str(conf), "-C", str(conf / "janus.jcfg"), "-o"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/janus"
        deadline = time.monotonic() + 15
        while not info_answers(url):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)

        async def sessions() -> tuple[int, int]:
            from teleconsult.sfu import JanusClient, JanusError

            async with JanusClient(url, api_secret=api_secret, admin_key=values["@ADMIN_KEY@"]) as client:
                access = await client.create_room(publishers=2)
                await client.destroy_room(access)
            try:
                async with JanusClient(url, api_secret="guessed"):
                    pass
            except JanusError as exc:
                return 0, exc.code
            return 1, 0

        assert asyncio.run(sessions()) == (0, 403)
    finally:
        process.terminate()
        process.wait(10)
