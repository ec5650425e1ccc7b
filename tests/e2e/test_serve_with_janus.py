"""`make run` starts the server with `serve --with-janus`: a Janus of its own on loopback for conference video,
stopped with the server; without Janus installed the server still starts and says video is unavailable."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from teleconsult.janus_local import info_answers
from tests.e2e.conftest import start_server, stop_server


def test_serve_with_janus_starts_and_stops_an_sfu_of_its_own(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"TELECONSULT_JANUS_LOCAL_DIR": str(tmp_path / "janus")}, ("--with-janus",))
    try:
        found = re.search(r"Janus SFU for conference video on (\S+)", server.log.read_text())
        assert found, server.log.read_text()
        url = found.group(1)
        assert info_answers(url)
        config = tmp_path / "janus" / "conf" / "janus.jcfg"
        assert oct(config.stat().st_mode & 0o777) == "0o600", "the config holds the api secret"
    finally:
        stop_server(server)
    deadline = time.monotonic() + 10
    while info_answers(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not info_answers(url), "Janus outlived the server"


def test_without_janus_the_server_still_starts(tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "janus").exists())
    server = start_server(
        tmp_path, {"PATH": path, "TELECONSULT_JANUS_LOCAL_DIR": str(tmp_path / "janus")}, ("--with-janus",)
    )
    try:
        assert "conference video unavailable: Janus is not installed" in server.log.read_text()
    finally:
        stop_server(server)
