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
    host: str = "127.0.0.1"
    port: int = 8080
    static_dir: Path = PROJECT_ROOT / "static"
    node_modules_dir: Path = PROJECT_ROOT / "node_modules"
    # The database password may live in a file (a container secret) rather than in the URL.
    database_password_file: Path | None = None
    cookie_secure: bool = False
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

    # Search.
    max_search_results: int = Field(default=50, ge=1, le=500)

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

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
