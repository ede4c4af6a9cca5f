"""Every knob is an environment variable (or a line in `.env`) with a default that works locally."""

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from cronsim import CronSim, CronSimError
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

{%- if cookiecutter.database == "sqlite" %}

    database_url: str = "sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}.db"
{%- else %}

    database_url: str = Field(
        default="postgresql+asyncpg://postgres:postgres@localhost:5432/{{ cookiecutter.project_slug }}",
    )
    # A connection attempt or statement that takes longer fails (a lost network would
    # otherwise leave it hanging): the request answers 503, a job write tries again.
    database_timeout_seconds: float = Field(default=60.0, gt=0)
{%- endif %}
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    redis_url: str = "redis://localhost:6379/0"
{%- if cookiecutter.job_backend == "rq" %}
    rq_queue: str = "{{ cookiecutter.project_slug }}"
{%- else %}
    celery_queue: str = "{{ cookiecutter.project_slug }}"
    # A message a worker took and then lost without a trace (its main process killed)
    # goes back to the queue after this long; a job still running past it gets a second
    # message, which the job table refuses. It must exceed the longest task's timeout
    # plus the cancel grace and the lease: the worker refuses to start otherwise.
    celery_visibility_timeout_seconds: float = Field(default=7200.0, gt=0)
{%- endif %}
{%- endif %}
    storage_dir: Path = Path("./storage")
    # Uploads past this size are refused with 413; nothing of them is kept.
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # Batches with more items are refused with 422.
    max_batch_items: int = Field(default=100_000, ge=1)
    # When the cleanup job runs, as a cron expression in UTC ("" turns it off), and how
    # long what it removes is kept.
    cleanup_schedule: str = "0 * * * *"
    document_retention_days: float = Field(default=30.0, ge=0)
    job_retention_days: float = Field(default=30.0, ge=0)
    report_retention_days: float = Field(default=7.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    # Comma-separated. When set, /api/v1 asks for one of them in X-API-Key. Unset, it
    # answers only requests that reach it over loopback, unless allow_open_api is true.
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    allow_open_api: bool = False
    # Request bodies past this size are refused with 413 before they are read whole
    # (uploads have max_upload_bytes instead).
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # Whether GET /metrics asks for an API key too (X-API-Key or `Authorization: Bearer`).
    metrics_require_api_key: bool = False
    # How often an open dashboard page asks for itself again; each time reads the database.
    dashboard_refresh_seconds: float = Field(default=2.0, gt=0)
    # Where every process of this service on this host keeps its metric counts; /metrics
    # adds them up. Files are reused by later processes, so they do not pile up.
    metrics_dir: Path = Path("./metrics")
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    # Each worker serves its own counts on this address for Prometheus to scrape; give
    # each worker on one host a port of its own. 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9101, ge=0, le=65535)
{%- endif %}
    job_shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # Each process that runs jobs heartbeats ten times per lease; the jobs of one not
    # heard from for a lease (it died, or lost the database) are run again elsewhere.
    job_lease_seconds: float = Field(default=30.0, gt=0)
    # How often due retries, delayed and left-over jobs and schedules are looked for.
    job_poll_seconds: float = Field(default=1.0, gt=0)
    # A job whose task no running executor knows (a rolling deploy under way) waits this
    # long after it is due for one that does, then fails as UnknownTask.
    job_unknown_task_seconds: float = Field(default=3600.0, gt=0)
    # After downtime, a schedule's latest missed fire time runs once (true) or is skipped.
    schedule_catch_up: bool = True
    # Emails: "console" logs them, "smtp" sends them.
    email_backend: Literal["console", "smtp"] = "console"
    email_from: str = "{{ cookiecutter.project_slug }}@localhost"
    email_max_attempts: int = Field(default=5, ge=1)
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    # "starttls" upgrades a plain connection; "tls" connects with TLS (usually port 465).
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
{%- if cookiecutter.job_backend == "aiojobs" %}
    # Jobs one process runs at the same time.
    job_concurrency: int = Field(default=10, ge=1)
{%- endif %}
{%- if cookiecutter.job_backend == "aiojobs" %}
    # Jobs waiting in memory for a slot; more wait queued in the table for the poller.
    job_pending_limit: int = Field(default=1000, ge=1)
    # Due jobs waiting in the table past which submitting answers 503.
    job_backlog_limit: int = Field(default=100_000, ge=1)
{%- endif %}

    @field_validator("api_keys", mode="before")
    @classmethod
    def split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("cleanup_schedule")
    @classmethod
    def parse_cron(cls, value: str) -> str:
        try:
            if value:
                CronSim(value, datetime.now(UTC))
        except CronSimError as error:
            raise ValueError(f"not a cron expression: {error}") from None
        return value

    @model_validator(mode="after")
    def metrics_keys_need_keys(self) -> "Settings":
        if self.metrics_require_api_key and not self.api_keys:
            raise ValueError("METRICS_REQUIRE_API_KEY=true needs API_KEYS to be set")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
