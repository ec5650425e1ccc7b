"""The one typed Settings object, read from ``TELECONSULT_*`` environment variables.

The database password may come from a file (``TELECONSULT_DATABASE_PASSWORD_FILE``); no secret is
hard-coded. Every limit the transports enforce lives here, not as a literal in a handler.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine.url import make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class IceServer(BaseSettings):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELECONSULT_", extra="ignore")

    # Where things live.
    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'teleconsult.sqlite3'}"
    # PostgreSQL only: put every table in this schema (tests use one schema per run).
    database_schema: str | None = None
    redis_url: str | None = None
    # Namespace of our Redis keys and pub/sub channel: several deployments (or test runs) may share one Redis.
    redis_prefix: str = Field(default="teleconsult", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = "127.0.0.1"
    port: int = 8080
    static_dir: Path = PROJECT_ROOT / "static"
    node_modules_dir: Path = PROJECT_ROOT / "node_modules"
    # The database password may live in a file (a container secret) rather than in the URL.
    database_password_file: Path | None = None
    cookie_secure: bool = False
    # Reverse proxies whose X-Forwarded-For is believed (exact addresses), so audit records the real client.
    trusted_proxies: list[str] = Field(default_factory=list)
    session_cookie_name: str = "tc_session"

    # Sessions.
    session_idle_timeout_s: int = Field(default=30 * 60, ge=60)
    session_absolute_timeout_s: int = Field(default=12 * 3600, ge=300)
    api_token_ttl_s: int = Field(default=24 * 3600, ge=60)
    device_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60, le=365 * 24 * 3600)

    # Locale.
    default_locale: str = "vi"
    display_timezone: str = "Asia/Ho_Chi_Minh"

    # Signaling limits.
    max_http_buffer_bytes: int = Field(default=256 * 1024, ge=4096)
    max_event_bytes: int = Field(default=64 * 1024, ge=1024)
    max_note_chars: int = Field(default=8000, ge=100)
    max_summary_chars: int = Field(default=4000, ge=100)
    max_room_participants: int = Field(default=4, ge=2)
    events_per_second: float = Field(default=40.0, gt=0)
    events_burst: int = Field(default=200, ge=1)
    ping_interval_s: float = Field(default=5.0, gt=0)
    ping_timeout_s: float = Field(default=10.0, gt=0)
    auth_timeout_s: float = Field(default=10.0, gt=0)
    ice_servers: list[IceServer] = Field(default_factory=list)

    # Waveforms (docs/waveform-format.md) and vital signs.
    max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    max_frame_samples: int = Field(default=20_000, ge=100, description="per signal, per frame")
    frames_per_second: float = Field(default=100.0, gt=0, description="per connection")
    frames_burst: int = Field(default=2_000, ge=1, description="a gateway resending its outbox")
    reorder_window_frames: int = Field(default=256, ge=0, description="frames a source may have in flight")
    reorder_wait_s: float = Field(default=2.0, gt=0)
    ingest_batch_frames: int = Field(default=1_000, ge=1)
    chunk_seconds: float = Field(default=10.0, gt=0, le=600)
    compaction_interval_s: float = Field(default=15.0, gt=0)
    derived_hr_interval_s: float = Field(default=3.0, ge=0, description="0 turns it off")
    derived_hr_window_s: float = Field(default=10.0, ge=3, le=60)
    commit_timeout_s: float = Field(default=10.0, gt=0)
    source_recheck_s: float = Field(default=30.0, gt=0, description="how often a streaming token is re-checked")
    max_read_seconds: float = Field(default=600.0, gt=0, le=3600)

    # Pairing (docs/architecture.md "Pairing"): how long an offer rings before the next candidate is tried.
    offer_timeout_emergency_s: float = Field(default=30.0, ge=5, le=3600)
    offer_timeout_urgent_s: float = Field(default=120.0, ge=5, le=3600)
    offer_timeout_routine_s: float = Field(default=600.0, ge=5, le=24 * 3600)
    emergency_parallel_offers: int = Field(default=3, ge=1, le=20, description="specialists rung at once")
    reoffer_after_s: float = Field(default=300.0, ge=0, description="an unanswered specialist may be rung again")
    pairing_tick_s: float = Field(default=1.0, gt=0, le=60, description="how often due timers are looked for")
    presence_lease_s: float = Field(default=30.0, ge=3, le=600, description="a process renews its leases at 1/3")

    # TURN (coturn with use-auth-secret): short-lived HMAC credentials per participant.
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str | None = None
    turn_secret_file: Path | None = None
    turn_credential_ttl_s: int = Field(default=3600, ge=60, le=3600)

    # Metrics: /metrics in Prometheus text format; when a token is set, scrapers send it as a Bearer token.
    metrics_token: str | None = None

    # Search.
    max_search_results: int = Field(default=50, ge=1, le=500)

    # Teleconferences (issue 5, docs/conferences.md): reminders, the room's lobby, UIDs in calendar invitations.
    conference_reminder_offsets_s: list[int] = Field(default_factory=lambda: [86400, 900])
    conference_reminder_grace_s: int = Field(default=600, ge=0, le=24 * 3600, description="late reminders")
    conference_reminder_tick_s: float = Field(default=30.0, gt=0, le=3600, description="how often to look")
    conference_room_opens_minutes: int = Field(default=15, ge=0, le=120)
    conference_late_after_minutes: int = Field(default=10, ge=0, le=120)
    conference_max_occurrences: int = Field(default=200, ge=1, le=1000)
    conference_max_duration_h: float = Field(default=8.0, gt=0, le=24)
    conference_max_publishers: int = Field(default=16, ge=2, le=100, description="sites sending video at once")
    conference_publisher_bitrate: int = Field(
        default=512_000, ge=32_000, le=4_000_000, description="bit/s Janus asks each site's upload to stay under"
    )
    # The SFU (Janus VideoRoom over its HTTP API, docs/sfu.md). Unset: conferences have notes, decisions and
    # attendance but no video. The secrets never reach a browser.
    janus_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8088/janus")
    janus_api_secret: str | None = None
    janus_admin_key: str | None = None
    janus_api_secret_file: Path | None = None  # take precedence over the values above (Compose secrets)
    janus_admin_key_file: Path | None = None
    janus_local_dir: str = Field(default="var/janus", description="config and log of `serve --with-janus`")
    calendar_domain: str = Field(default="teleconsult.local", pattern=r"^[A-Za-z0-9.-]{1,200}$")

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        if value not in ("vi", "en"):
            raise ValueError("default_locale must be 'vi' or 'en'")
        return value

    def effective_database_url(self) -> str:
        """The database URL, with the password from ``database_password_file`` when one is given."""
        if not self.database_password_file:
            return self.database_url
        password = self.database_password_file.read_text().strip()
        url = make_url(self.database_url).set(password=password)
        return url.render_as_string(hide_password=False)

    def effective_turn_secret(self) -> str | None:
        if self.turn_secret_file is not None:
            return self.turn_secret_file.read_text().strip()
        return self.turn_secret

    def effective_janus_secrets(self) -> tuple[str | None, str | None]:
        """(api secret, admin key), from their files when given."""
        api = self.janus_api_secret_file.read_text().strip() if self.janus_api_secret_file else self.janus_api_secret
        key = self.janus_admin_key_file.read_text().strip() if self.janus_admin_key_file else self.janus_admin_key
        return api, key

    def offer_timeout_s(self, urgency: str) -> float:
        return float(getattr(self, f"offer_timeout_{urgency}_s"))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
