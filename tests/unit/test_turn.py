"""TURN credentials for coturn's use-auth-secret: "expiry:user" signed with HMAC-SHA1 of the shared secret."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from pathlib import Path

import pytest
from pydantic import ValidationError

from teleconsult.domain.turn import credentials, ice_servers
from teleconsult.settings import Settings

SECRET = "north-star-secret"
NOW = 1_700_000_000
TURN_URLS = ["turn:turn.example.vn:3478?transport=udp", "turn:turn.example.vn:3478?transport=tcp"]
STUN = {"urls": ["stun:stun.example.vn:3478"]}


def expected_password(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def test_username_is_expiry_then_user_and_expiry_is_now_plus_ttl() -> None:
    username, _ = credentials(SECRET, 42, NOW, 3600)
    assert username == "1700003600:42"
    username, _ = credentials(SECRET, 7, NOW, 60)
    expiry, user = username.split(":")
    assert (int(expiry), user) == (NOW + 60, "7")


def test_password_is_base64_hmac_sha1_of_the_username() -> None:
    username, password = credentials(SECRET, 42, NOW, 3600)
    # Computed once outside Python: printf '1700003600:42' | openssl dgst -sha1 -hmac north-star-secret -binary | base64
    assert password == "KVi5GhJAFPbAaxZklBfKLlBpyOc="
    assert password == expected_password(SECRET, username)
    assert len(base64.b64decode(password)) == 20  # SHA-1 digest


def test_password_changes_with_the_secret_the_user_and_the_expiry() -> None:
    _, password = credentials(SECRET, 42, NOW, 3600)
    assert credentials("another-secret", 42, NOW, 3600)[1] != password
    assert credentials(SECRET, 43, NOW, 3600)[1] != password
    assert credentials(SECRET, 42, NOW + 1, 3600)[1] != password


def test_turn_entry_is_added_with_fresh_credentials_after_the_static_ones() -> None:
    servers = ice_servers([STUN], turn_urls=TURN_URLS, secret=SECRET, ttl_s=600, user_id=9, now_s=NOW)
    assert servers[0] == STUN
    assert servers[1] == {
        "urls": TURN_URLS,
        "username": f"{NOW + 600}:9",
        "credential": expected_password(SECRET, f"{NOW + 600}:9"),
    }
    assert len(servers) == 2


@pytest.mark.parametrize(("urls", "secret"), [([], SECRET), (TURN_URLS, None), (TURN_URLS, "")])
def test_no_turn_entry_without_urls_or_secret(urls: list[str], secret: str | None) -> None:
    servers = ice_servers([STUN], turn_urls=urls, secret=secret, ttl_s=600, user_id=9, now_s=NOW)
    assert servers == [STUN]


def test_static_entries_and_urls_are_not_mutated() -> None:
    static = [{"urls": ["stun:stun.example.vn:3478"]}, {"urls": ["turn:legacy.example.vn"], "username": "u"}]
    urls = list(TURN_URLS)
    before = copy.deepcopy(static)
    servers = ice_servers(static, turn_urls=urls, secret=SECRET, ttl_s=600, user_id=9, now_s=NOW)
    servers[0]["username"] = "changed"
    servers[-1]["urls"].append("turn:elsewhere")
    assert static == before
    assert urls == TURN_URLS
    assert servers[0] is not static[0]


def test_settings_refuse_a_credential_ttl_over_one_hour() -> None:
    assert Settings(turn_credential_ttl_s=3600).turn_credential_ttl_s == 3600
    with pytest.raises(ValidationError):
        Settings(turn_credential_ttl_s=3601)
    with pytest.raises(ValidationError):
        Settings(turn_credential_ttl_s=59)


def test_turn_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TELECONSULT_TURN_URLS", '["turn:127.0.0.1:3478?transport=udp"]')
    monkeypatch.setenv("TELECONSULT_TURN_SECRET", "from-env")
    monkeypatch.setenv("TELECONSULT_TURN_CREDENTIAL_TTL_S", "900")
    settings = Settings()
    assert settings.turn_urls == ["turn:127.0.0.1:3478?transport=udp"]
    assert settings.turn_credential_ttl_s == 900
    assert settings.effective_turn_secret() == "from-env"
    secret_file = tmp_path / "turn_secret"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("TELECONSULT_TURN_SECRET_FILE", str(secret_file))
    assert Settings().effective_turn_secret() == "from-file"
    monkeypatch.setenv("TELECONSULT_TURN_CREDENTIAL_TTL_S", "7200")
    with pytest.raises(ValidationError):
        Settings()
