"""Login, sessions, API tokens. Passwords are Argon2id; only hashes of session secrets are stored."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update

from teleconsult.clock import Clock
from teleconsult.domain.errors import Unauthenticated, ValidationFailed
from teleconsult.domain.people import Actor
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import SessionRow, UserRow

_hasher = PasswordHasher()  # argon2-cffi's default type is Argon2id
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# Writing last_seen on every request would turn every read into a write; this bounds the idle error.
_TOUCH_EVERY = timedelta(seconds=30)


def new_token() -> str:
    """A session or device token. The prefix keeps it from starting with "-", which a command line would
    take for an option (teleconsult device play --token ...), and makes a leaked one easy to recognise."""
    return "tc_" + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthSession:
    actor: Actor
    token_hash: str
    csrf_token: str
    kind: str


@dataclass(frozen=True, slots=True)
class IssuedSession:
    token: str
    session: AuthSession
    max_age_s: int


class AuthService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings

    async def login(self, username: str, password: str, *, source: str, kind: str = "browser") -> IssuedSession:
        if kind not in ("browser", "api"):
            raise ValidationFailed("unknown session kind")
        username = username.strip().lower()[:64]
        async with self._db.transaction() as tx:
            user = (await tx.execute(select(UserRow).where(UserRow.username == username))).scalar_one_or_none()
        stored = user.password_hash if user is not None and user.active else _DUMMY_HASH
        ok = await asyncio.to_thread(_verify, stored, password[:1024])
        now = self._clock.now()
        if not ok or user is None or not user.active:
            # Raise only after the commit: raising inside the transaction would roll the audit row back.
            async with self._db.transaction() as tx:
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=user.id if user else None,
                    action="auth.login",
                    entity_type="user",
                    entity_id=user.id if user else None,
                    outcome="failure",
                    source=source,
                    detail=kind,
                )
            raise Unauthenticated("wrong username or password")
        async with self._db.transaction() as tx:
            token = new_token()
            ttl = self._settings.session_absolute_timeout_s if kind == "browser" else self._settings.api_token_ttl_s
            row = SessionRow(
                token_hash=_digest(token),
                user_id=user.id,
                kind=kind,
                csrf_token=secrets.token_urlsafe(24),
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=ttl),
                source_ip=source[:64],
            )
            tx.add(row)
            repo.audit(
                tx,
                at=now,
                actor_user_id=user.id,
                action="auth.login",
                entity_type="user",
                entity_id=user.id,
                outcome="success",
                source=source,
                detail=kind,
            )
            actor = await repo.actor_for_user(tx, user.id)
        assert actor is not None
        return IssuedSession(token, AuthSession(actor, row.token_hash, row.csrf_token, kind), ttl)

    async def issue_device_token(self, username: str, ttl_s: int, *, source: str) -> IssuedSession:
        """A long-lived token for a bedside gateway, issued by an operator on the command line for the
        clinician the device streams for. It is revoked like any session (logout or an admin)."""
        now = self._clock.now()
        async with self._db.transaction() as tx:
            user = (
                await tx.execute(select(UserRow).where(UserRow.username == username.strip().lower()[:64]))
            ).scalar_one_or_none()
            if user is None or not user.active:
                raise ValidationFailed("no active user with that username", field="username")
            token = new_token()
            row = SessionRow(
                token_hash=_digest(token),
                user_id=user.id,
                kind="device",
                csrf_token=secrets.token_urlsafe(24),
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=ttl_s),
                source_ip=source[:64],
            )
            tx.add(row)
            repo.audit(
                tx,
                at=now,
                actor_user_id=user.id,
                action="auth.device_token",
                entity_type="user",
                entity_id=user.id,
                outcome="success",
                source=source,
            )
            actor = await repo.actor_for_user(tx, user.id)
        assert actor is not None
        return IssuedSession(token, AuthSession(actor, row.token_hash, row.csrf_token, "device"), ttl_s)

    async def resolve(self, token: str) -> AuthSession:
        """The live session for a token, sliding its idle deadline; Unauthenticated when expired or revoked."""
        if not token or len(token) > 128:
            raise Unauthenticated("not logged in")
        digest = _digest(token)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await tx.get(SessionRow, digest)
            if row is None or row.revoked_at is not None:
                raise Unauthenticated("not logged in")
            idle = timedelta(seconds=self._settings.session_idle_timeout_s)
            if now >= row.expires_at or (row.kind == "browser" and now - row.last_seen_at > idle):
                row.revoked_at = now
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=row.user_id,
                    action="auth.session_expired",
                    entity_type="user",
                    entity_id=row.user_id,
                    outcome="success",
                    source="",
                )
                expired = True
            else:
                expired = False
                if now - row.last_seen_at >= _TOUCH_EVERY:
                    row.last_seen_at = now
                actor = await repo.actor_for_user(tx, row.user_id)
        if expired:
            raise Unauthenticated("your session has expired; please log in again")
        if actor is None:
            raise Unauthenticated("account disabled")
        return AuthSession(actor, digest, row.csrf_token, row.kind)

    async def logout(self, token_hash: str, *, source: str) -> None:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await tx.get(SessionRow, token_hash)
            if row is None or row.revoked_at is not None:
                return
            row.revoked_at = now
            repo.audit(
                tx,
                at=now,
                actor_user_id=row.user_id,
                action="auth.logout",
                entity_type="user",
                entity_id=row.user_id,
                outcome="success",
                source=source,
            )

    async def set_locale(self, actor: Actor, locale: str) -> None:
        if locale not in ("vi", "en"):
            raise ValidationFailed("language must be 'vi' or 'en'", field="locale")
        async with self._db.transaction() as tx:
            await tx.execute(update(UserRow).where(UserRow.id == actor.user_id).values(locale=locale))


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
