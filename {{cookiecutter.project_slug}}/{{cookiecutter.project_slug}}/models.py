"""The database tables.

The job table is the one record of every job's state, whichever backend runs it. Each
domain row (email, document, batch, report) keeps the id of the job that works on it.
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from {{ cookiecutter.project_slug }}.clock import SERVER_NOW, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


def status_type(enum: type[StrEnum]) -> sa.Enum:
    # A VARCHAR holding the values, not a native enum type: adding a status later is
    # then a code change, not a schema migration.
    return sa.Enum(
        enum,
        native_enum=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


def timestamp(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index)


def created_timestamp() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


def database_timestamp() -> Any:
    """Set by the database, in its own clock, when the row is inserted."""
    return Field(
        default=None,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": SERVER_NOW, "nullable": False},
    )


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(SQLModel, table=True):
    __table_args__ = (
        # Claiming asks for due queued jobs: status first, then run_after.
        sa.Index("ix_job_status_run_after", "status", "run_after"),
        # An executor's heartbeat asks for its running jobs; recovery for all running ones.
        sa.Index("ix_job_status_executor_id", "status", "executor_id"),
        # The dashboard counts jobs by task and status from this index alone.
        sa.Index("ix_job_name_status", "name", "status"),
    )
    # Read back what the database set (run_after) with the INSERT, not with a SELECT.
    __mapper_args__ = {"eager_defaults": True}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100)
    status: JobStatus = Field(default=JobStatus.QUEUED, sa_type=status_type(JobStatus))
    arguments: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    result: Any = Field(default=None, sa_type=sa.JSON, nullable=True)
    error_type: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    error_traceback: str | None = Field(default=None, sa_type=sa.Text)
    # Every attempt started, each numbered; a shutdown gives an interrupted one back.
    attempts: int = 0
    max_attempts: int = Field(default=3, ge=1)
    # Of the attempts, those cut short because their process died (killed, out of
    # memory, cut off): not counted against max_attempts, so the jobs beside one that
    # keeps killing its process do not pay for it (jobs/recovery.py).
    lost_attempts: int = 0
    timeout_seconds: float = Field(default=300.0, gt=0)
    idempotency_key: str | None = Field(default=None, max_length=255, unique=True)
    progress: float = Field(default=0.0, ge=0, le=1)
    progress_message: str | None = Field(default=None, max_length=255)
    # Due from this time on, in the database's clock: now, unless set.
    run_after: datetime = database_timestamp()
    # The executor that runs (or last ran) the job. A running job whose executor has
    # stopped its heartbeat is run again elsewhere.
    executor_id: uuid.UUID | None = None
    created_at: datetime = created_timestamp()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp(index=True)


class Executor(SQLModel, table=True):
    """A process that runs jobs, alive while its heartbeat is recent (database time)."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    host: str = Field(max_length=255)
    pid: int
    backend: str = Field(max_length=50)
    # The names of the tasks it runs: a job of a task no executor knows waits (a
    # rolling deploy under way) rather than failing.
    tasks: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    started_at: datetime = database_timestamp()
    heartbeat_at: datetime = database_timestamp()


class EmailStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Email(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    to: str = Field(max_length=320)
    subject: str = Field(max_length=255)
    body: str = Field(sa_type=sa.Text)
    status: EmailStatus = Field(default=EmailStatus.QUEUED, sa_type=status_type(EmailStatus))
    error: str | None = Field(default=None, sa_type=sa.Text)
    job_id: uuid.UUID | None = None
    created_at: datetime = created_timestamp()
    sent_at: datetime | None = timestamp()


class DocumentStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    ERROR = "error"
    CANCELLED = "cancelled"


class Document(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # The client's filename is metadata only; the file on disk has a generated name.
    original_filename: str = Field(default="", max_length=255)
    stored_name: str = Field(max_length=64, unique=True)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    status: DocumentStatus = Field(
        default=DocumentStatus.PROCESSING, sa_type=status_type(DocumentStatus)
    )
    size_bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    sha256: str | None = Field(default=None, max_length=64)
    char_count: int | None = Field(default=None, sa_type=sa.BigInteger)
    word_count: int | None = Field(default=None, sa_type=sa.BigInteger)
    error: str | None = Field(default=None, sa_type=sa.Text)
    job_id: uuid.UUID | None = None
    created_at: datetime = created_timestamp()
    processed_at: datetime | None = timestamp()
    archived_at: datetime | None = timestamp(index=True)


class BatchStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Batch(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=255)
    status: BatchStatus = Field(default=BatchStatus.PENDING, sa_type=status_type(BatchStatus))
    total_items: int = 0
    # Items before this index are done; a retried batch resumes here.
    processed_items: int = 0
    failed_items: int = 0
    # One entry per failed item: its index and the error.
    failures: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    error: str | None = Field(default=None, sa_type=sa.Text)
    job_id: uuid.UUID | None = None
    created_at: datetime = created_timestamp()
    started_at: datetime | None = timestamp()
    completed_at: datetime | None = timestamp()


class BatchItems(SQLModel, table=True):
    """A batch's items, in a row of their own: saving the batch's progress or status then
    writes a small row, not every item again."""

    batch_id: uuid.UUID = Field(primary_key=True)
    items: list[Any] = Field(default_factory=list, sa_type=sa.JSON)


class ReportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Report(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=50)
    filters: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: ReportStatus = Field(default=ReportStatus.QUEUED, sa_type=status_type(ReportStatus))
    stored_name: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, sa_type=sa.Text)
    job_id: uuid.UUID | None = None
    created_at: datetime = created_timestamp()
    completed_at: datetime | None = timestamp(index=True)
