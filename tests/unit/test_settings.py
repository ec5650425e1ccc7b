"""Settings: limits and secrets come from TELECONSULT_* variables; a password can come from a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine.url import make_url

from teleconsult.settings import Settings


def test_the_database_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("s3cr3t/with:chars@\n")
    settings = Settings(
        database_url="postgresql+asyncpg://teleconsult@db:5432/teleconsult", database_password_file=secret
    )
    url = settings.effective_database_url()
    assert url.startswith("postgresql+asyncpg://teleconsult:") and url.endswith("@db:5432/teleconsult")
    assert make_url(url).password == "s3cr3t/with:chars@"


def test_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECONSULT_MAX_ROOM_PARTICIPANTS", "3")
    monkeypatch.setenv("TELECONSULT_ICE_SERVERS", '[{"urls": ["stun:127.0.0.1:3478"]}]')
    settings = Settings()
    assert settings.max_room_participants == 3
    assert settings.ice_servers[0].urls == ["stun:127.0.0.1:3478"]


def test_nonsense_limits_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECONSULT_MAX_ROOM_PARTICIPANTS", "1")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("TELECONSULT_MAX_ROOM_PARTICIPANTS", "4")
    monkeypatch.setenv("TELECONSULT_DEFAULT_LOCALE", "fr")
    with pytest.raises(ValidationError):
        Settings()


def test_the_audit_trail_believes_x_forwarded_for_only_from_a_trusted_proxy() -> None:
    from teleconsult.netaddr import forwarded_client

    proxy = ["10.0.0.5"]
    assert forwarded_client("10.0.0.5", "203.0.113.9", proxy) == "203.0.113.9"
    # A client may send its own header; the proxy appends the address it saw last.
    assert forwarded_client("10.0.0.5", "1.2.3.4, 203.0.113.9", proxy) == "203.0.113.9"
    assert forwarded_client("198.51.100.7", "1.2.3.4", proxy) == "198.51.100.7"
    assert forwarded_client("10.0.0.5", "", proxy) == "10.0.0.5"
