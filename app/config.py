"""One typed settings object, read from the environment (and an optional .env file).

Every setting has a default that runs the service on a bare machine: an embedded SQLite file,
an in-process cache, no code host. Outside development a placeholder secret stops start-up.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "token", "placeholder"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "staging", "production"] = Field(
        "development", validation_alias="APP_ENV"
    )
    host: str = Field("127.0.0.1", validation_alias="APP_HOST")
    port: int = Field(8000, validation_alias="APP_PORT")

    database_url: str = Field(
        f"sqlite:///{Path('var/hitl.db').resolve()}", validation_alias="DATABASE_URL"
    )
    # Secrets as files (compose/Kubernetes secrets), so they stay out of the environment that
    # `docker inspect` and /proc/<pid>/environ show: the password replaces any in DATABASE_URL.
    database_password_file: Path | None = Field(None, validation_alias="DATABASE_PASSWORD_FILE")
    # Bounds that turn a database outage into a quick 503 instead of a hang.
    db_connect_timeout_seconds: float = Field(3.0, validation_alias="DB_CONNECT_TIMEOUT_SECONDS")
    db_pool_size: int = Field(10, validation_alias="DB_POOL_SIZE")
    db_max_overflow: int = Field(5, validation_alias="DB_MAX_OVERFLOW")
    db_pool_timeout_seconds: float = Field(5.0, validation_alias="DB_POOL_TIMEOUT_SECONDS")
    db_statement_timeout_ms: int = Field(5000, validation_alias="DB_STATEMENT_TIMEOUT_MS")

    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    redis_timeout_seconds: float = Field(0.5, validation_alias="REDIS_TIMEOUT_SECONDS")
    stats_cache_ttl_seconds: int = Field(10, validation_alias="STATS_CACHE_TTL_SECONDS")
    memory_cache_max_entries: int = Field(1024, validation_alias="MEMORY_CACHE_MAX_ENTRIES")

    max_body_bytes: int = Field(256 * 1024, validation_alias="MAX_BODY_BYTES")
    # API requests one process works on at once; more get 503 + Retry-After (app/admission.py).
    # 0 turns the bound off.
    max_in_flight: int = Field(32, ge=0, validation_alias="APP_MAX_IN_FLIGHT")

    code_host_url: str | None = Field(None, validation_alias="CODE_HOST_URL")
    code_host_token: str | None = Field(None, validation_alias="CODE_HOST_TOKEN")
    code_host_token_file: Path | None = Field(None, validation_alias="CODE_HOST_TOKEN_FILE")
    # The wall-clock deadline of one attempt at an action, whatever the host does with the
    # connection (app/reviews/flows.py: CodeHost); shorter than the lease, checked below.
    code_host_timeout_seconds: float = Field(5.0, gt=0, validation_alias="CODE_HOST_TIMEOUT_SECONDS")
    action_max_attempts: int = Field(5, validation_alias="ACTION_MAX_ATTEMPTS")
    action_retry_base_seconds: float = Field(2.0, validation_alias="ACTION_RETRY_BASE_SECONDS")
    action_retry_poll_seconds: float = Field(1.0, validation_alias="ACTION_RETRY_POLL_SECONDS")
    action_retry_enabled: bool = Field(True, validation_alias="ACTION_RETRY_ENABLED")
    # How long an attempt owns its action before another replica may take it over (its process
    # may have died). Longer than a code-host call can take, so a live attempt is not doubled.
    action_lease_seconds: float = Field(30.0, gt=0, validation_alias="ACTION_LEASE_SECONDS")

    # Fault injection for alert tests: a share of API requests fail (500) or are slowed.
    # Off by default; only an admin-role key can change it at run time.
    fault_error_ratio: float = Field(0.0, ge=0, le=1, validation_alias="FAULT_ERROR_RATIO")
    fault_delay_ratio: float = Field(0.0, ge=0, le=1, validation_alias="FAULT_DELAY_RATIO")
    fault_delay_seconds: float = Field(1.5, ge=0, le=30, validation_alias="FAULT_DELAY_SECONDS")

    # Seconds between probes of the database for hitl.database.up (a SELECT 1 each).
    db_probe_interval_seconds: float = Field(5.0, gt=0, validation_alias="DB_PROBE_INTERVAL_SECONDS")
    # Seconds between readings of the pending-queue gauges (a database query each).
    pending_gauge_refresh_seconds: float = Field(5.0, validation_alias="PENDING_GAUGE_REFRESH_SECONDS")

    # Young-generation threshold of the garbage collector when serving (CPython's default is
    # 700); 0 leaves the interpreter's defaults alone (see app/__main__.py: tune_gc).
    gc_gen0_threshold: int = Field(10_000, ge=0, validation_alias="GC_GEN0_THRESHOLD")

    def _read_secret_files(self) -> None:
        if self.database_password_file is not None:
            if self.is_sqlite:
                raise ValueError("DATABASE_PASSWORD_FILE is set but DATABASE_URL is SQLite, which has no password")
            password = _read_secret("DATABASE_PASSWORD_FILE", self.database_password_file)
            url = make_url(self.database_url).set(password=password)
            self.database_url = url.render_as_string(hide_password=False)
        if self.code_host_token_file is not None:
            self.code_host_token = _read_secret("CODE_HOST_TOKEN_FILE", self.code_host_token_file) or None

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> "Settings":
        if self.action_lease_seconds <= self.code_host_timeout_seconds:
            raise ValueError(
                f"ACTION_LEASE_SECONDS ({self.action_lease_seconds:g}) must be longer than "
                f"CODE_HOST_TIMEOUT_SECONDS ({self.code_host_timeout_seconds:g}), or a slow call is tried twice"
            )
        return self

    @property
    def action_policy(self):
        from app.reviews.flows import RetryPolicy

        return RetryPolicy(
            lease_seconds=self.action_lease_seconds,
            base_seconds=self.action_retry_base_seconds,
            max_attempts=self.action_max_attempts,
        )

    @model_validator(mode="after")
    def _no_placeholder_secrets_outside_development(self) -> "Settings":
        self._read_secret_files()  # first: a secret from a file is checked like one from the environment
        if self.environment in ("staging", "production"):
            token = (self.code_host_token or "").strip().lower()
            if self.code_host_url and token in PLACEHOLDER_SECRETS:
                raise ValueError(
                    "CODE_HOST_TOKEN is unset or a placeholder; set a real token outside development"
                )
            if self.database_url.startswith("sqlite") and self.environment == "production":
                raise ValueError("DATABASE_URL must point at PostgreSQL in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _read_secret(setting: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


@lru_cache
def get_settings() -> Settings:
    return Settings()
