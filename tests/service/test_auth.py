"""Login, session lifetime and logout, on SQLite and PostgreSQL, with a clock the tests move."""

from __future__ import annotations

import pytest

from teleconsult.clock import FakeClock
from teleconsult.domain.errors import Unauthenticated, ValidationFailed
from teleconsult.domain.people import Role
from teleconsult.services import Services
from teleconsult.storage.models import SessionRow, UserRow
from tests.conftest import PASSWORD, World
from tests.service.support import audit_rows, count, rows


async def test_login_opens_a_session_the_token_resolves_to(services: Services, world: World) -> None:
    issued = await services.auth.login(" Clin.A ", PASSWORD, source="203.0.113.7")

    assert issued.session.actor == world.clin_a
    assert issued.session.actor.role is Role.CLINICIAN and issued.session.actor.facility_id == world.tyt_a.id
    assert issued.max_age_s == services.settings.session_absolute_timeout_s
    resolved = await services.auth.resolve(issued.token)
    assert resolved.actor == world.clin_a
    assert resolved.csrf_token == issued.session.csrf_token and resolved.kind == "browser"
    # Only the digest of the token is stored, never the token itself.
    stored = await rows(services, SessionRow, SessionRow.user_id == world.clin_a.user_id)
    assert issued.session.token_hash in {s.token_hash for s in stored}
    assert issued.token not in {s.token_hash for s in stored}
    [login] = await audit_rows(services, action="auth.login", source="203.0.113.7")
    assert (login.outcome, login.actor_user_id, login.detail) == ("success", world.clin_a.user_id, "browser")


async def test_passwords_are_stored_as_argon2id(services: Services, world: World) -> None:
    users = await rows(services, UserRow)
    assert len(users) == 7
    for user in users:
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


async def test_wrong_password_is_refused_and_audited(services: Services, world: World) -> None:
    sessions_before = await count(services, SessionRow)
    with pytest.raises(Unauthenticated) as raised:
        await services.auth.login("spec.cardio", "correct-horse-2", source="198.51.100.1")

    assert raised.value.message == "wrong username or password"
    assert await count(services, SessionRow) == sessions_before
    [failure] = await audit_rows(services, action="auth.login", source="198.51.100.1")
    assert (failure.outcome, failure.actor_user_id) == ("failure", world.spec_cardio.user_id)


async def test_unknown_user_gets_the_same_answer_and_is_audited(services: Services, world: World) -> None:
    with pytest.raises(Unauthenticated) as raised:
        await services.auth.login("nobody.here", PASSWORD, source="198.51.100.2")

    assert raised.value.message == "wrong username or password"  # no hint that the account does not exist
    [failure] = await audit_rows(services, action="auth.login", source="198.51.100.2")
    assert (failure.outcome, failure.actor_user_id) == ("failure", None)


async def test_unknown_session_kind_is_rejected(services: Services, world: World) -> None:
    with pytest.raises(ValidationFailed):
        await services.auth.login("clin.a", PASSWORD, source="t", kind="forever")


async def test_idle_browser_session_expires(services: Services, world: World, clock: FakeClock) -> None:
    issued = await services.auth.login("clin.a", PASSWORD, source="t")
    clock.advance(services.settings.session_idle_timeout_s - 1)
    await services.auth.resolve(issued.token)  # still fine just before the idle deadline

    clock.advance(services.settings.session_idle_timeout_s + 1)
    with pytest.raises(Unauthenticated, match="expired"):
        await services.auth.resolve(issued.token)
    # Once expired it stays dead, even if time somehow stood still.
    with pytest.raises(Unauthenticated):
        await services.auth.resolve(issued.token)
    [expired] = await audit_rows(services, action="auth.session_expired")
    assert expired.actor_user_id == world.clin_a.user_id


async def test_an_active_session_slides(services: Services, world: World, clock: FakeClock) -> None:
    idle = services.settings.session_idle_timeout_s
    issued = await services.auth.login("spec.cardio", PASSWORD, source="t")
    for _ in range(4):  # four idle periods in all: alive only because each use pushed the deadline
        clock.advance(idle - 60)
        assert (await services.auth.resolve(issued.token)).actor == world.spec_cardio

    clock.advance(idle + 1)
    with pytest.raises(Unauthenticated):
        await services.auth.resolve(issued.token)


async def test_browser_session_ends_at_the_absolute_limit(services: Services, world: World, clock: FakeClock) -> None:
    settings = services.settings
    issued = await services.auth.login("spec.cardio", PASSWORD, source="t")
    step = settings.session_idle_timeout_s // 2
    elapsed = 0
    while elapsed + step < settings.session_absolute_timeout_s:
        clock.advance(step)
        elapsed += step
        await services.auth.resolve(issued.token)  # kept busy: never idle

    clock.advance(settings.session_absolute_timeout_s - elapsed)
    with pytest.raises(Unauthenticated, match="expired"):
        await services.auth.resolve(issued.token)


async def test_api_token_ignores_idleness_but_not_its_ttl(services: Services, world: World, clock: FakeClock) -> None:
    issued = await services.auth.login("clin.a", PASSWORD, source="gateway", kind="api")
    assert issued.max_age_s == services.settings.api_token_ttl_s

    clock.advance(services.settings.api_token_ttl_s - 1)  # far past the idle timeout, untouched
    assert (await services.auth.resolve(issued.token)).kind == "api"
    clock.advance(1)
    with pytest.raises(Unauthenticated):
        await services.auth.resolve(issued.token)


async def test_logout_revokes_only_that_session(services: Services, world: World) -> None:
    laptop = await services.auth.login("coord", PASSWORD, source="t")
    phone = await services.auth.login("coord", PASSWORD, source="t")

    await services.auth.logout(laptop.session.token_hash, source="192.0.2.9")

    with pytest.raises(Unauthenticated):
        await services.auth.resolve(laptop.token)
    assert (await services.auth.resolve(phone.token)).actor == world.coord
    [logout] = await audit_rows(services, action="auth.logout")
    assert (logout.actor_user_id, logout.source, logout.outcome) == (world.coord.user_id, "192.0.2.9", "success")
    await services.auth.logout(laptop.session.token_hash, source="192.0.2.9")  # twice is harmless
    assert len(await audit_rows(services, action="auth.logout")) == 1


@pytest.mark.parametrize("token", ["", "x" * 129, "not-a-token"])
async def test_garbage_tokens_are_unauthenticated(services: Services, world: World, token: str) -> None:
    with pytest.raises(Unauthenticated):
        await services.auth.resolve(token)


async def test_chosen_language_follows_the_user(services: Services, world: World) -> None:
    issued = await services.auth.login("spec.neuro", PASSWORD, source="t")
    await services.auth.set_locale(world.spec_neuro, "en")
    assert (await services.auth.resolve(issued.token)).actor.locale == "en"
    with pytest.raises(ValidationFailed):
        await services.auth.set_locale(world.spec_neuro, "fr")
