"""Building a CSV report into storage: rows counted by day and status."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

import anyio
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.jobs.registry import (
    JobContext,
    PermanentJobError,
    Row,
    task,
)
from {{ cookiecutter.project_slug }}.models import Batch, Document, Report, ReportStatus, utcnow
from {{ cookiecutter.project_slug }}.storage import Storage


class ReportKind(StrEnum):
    DOCUMENTS_BY_STATUS_AND_DAY = "documents_by_status_and_day"
    BATCHES_BY_STATUS_AND_DAY = "batches_by_status_and_day"


# What each kind counts: (creation time, status) columns of its table.
COLUMNS: dict[ReportKind, tuple[Any, Any]] = {
    ReportKind.DOCUMENTS_BY_STATUS_AND_DAY: (col(Document.created_at), col(Document.status)),
    ReportKind.BATCHES_BY_STATUS_AND_DAY: (col(Batch.created_at), col(Batch.status)),
}


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def count_by_day_and_status(
    session: AsyncSession, kind: ReportKind, since: date | None, until: date | None
) -> list[tuple[str, str, int]]:
    created, status = COLUMNS[kind]
    day = func.date(created)
    statement = select(day, status, func.count()).group_by(day, status).order_by(day, status)
    if since is not None:
        statement = statement.where(created >= midnight(since))
    if until is not None:
        statement = statement.where(created < midnight(until + timedelta(days=1)))
    return [(str(d), str(s), int(n)) for d, s, n in (await session.exec(statement)).all()]


def as_csv(rows: list[tuple[str, str, int]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["day", "status", "count"])
    writer.writerows(rows)
    return text.getvalue()


REPORT_ROW = Row(
    Report,
    unfinished=(ReportStatus.QUEUED, ReportStatus.RUNNING),
    failed=ReportStatus.FAILED,
    cancelled=ReportStatus.CANCELLED,
    ended_at="completed_at",
)


@task(timeout_seconds=600, max_attempts=3, row=REPORT_ROW)
async def build_report(ctx: JobContext, report_id: str) -> dict[str, int]:
    report = await ctx.session.get(Report, uuid.UUID(report_id))
    if report is None:
        raise PermanentJobError(f"report {report_id} does not exist")
    report.status, report.error = ReportStatus.RUNNING, None
    await ctx.session.commit()
    since, until = (report.filters.get(name) for name in ("since", "until"))
    rows = await count_by_day_and_status(
        ctx.session,
        ReportKind(report.kind),
        date.fromisoformat(since) if since else None,
        date.fromisoformat(until) if until else None,
    )
    # Counts by day are small; written under a temporary name, renamed when whole.
    stored_name = report.stored_name or uuid.uuid4().hex
    path = Storage(ctx.settings.storage_dir).path("reports", stored_name)
    partial = anyio.Path(path.with_name(f"{stored_name}.partial"))
    await partial.parent.mkdir(parents=True, exist_ok=True)
    await partial.write_text(as_csv(rows), newline="")
    await partial.rename(path)
    report.stored_name, report.status = stored_name, ReportStatus.READY
    report.completed_at = utcnow()
    await ctx.session.commit()
    return {"rows": len(rows)}
