"""The periodic cleanup: archived documents, finished jobs and reports past their retention.

Deletes in bounded chunks (short transactions, bounded memory), files before rows, and
goes on when a file is already gone. Registered with the poller, so it runs once per
CLEANUP_INTERVAL_SECONDS however many processes run.
"""

import logging
from datetime import timedelta

import anyio
from sqlmodel import col, delete, select

from {{ cookiecutter.project_slug }}.jobs.poller import Schedule
from {{ cookiecutter.project_slug }}.jobs.registry import JobContext, task
from {{ cookiecutter.project_slug }}.models import Document, Job, JobStatus, Report, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.storage import Storage

logger = logging.getLogger(__name__)

CHUNK = 500
FINISHED = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]


async def remove_file(storage: Storage, folder: str, stored_name: str | None) -> None:
    if stored_name:
        await anyio.Path(storage.path(folder, stored_name)).unlink(missing_ok=True)


@task(timeout_seconds=3600, max_attempts=3)
async def cleanup(ctx: JobContext) -> dict[str, int]:
    settings, session, now = ctx.settings, ctx.session, utcnow()
    storage = Storage(settings.storage_dir)
    removed = {"documents": 0, "reports": 0, "jobs": 0}

    documents_before = now - timedelta(days=settings.document_retention_days)
    while documents := (
        await session.exec(
            select(Document).where(col(Document.archived_at) < documents_before).limit(CHUNK)
        )
    ).all():
        for document in documents:
            await remove_file(storage, "documents", document.stored_name)
        ids = [document.id for document in documents]
        deleted = await session.exec(delete(Document).where(col(Document.id).in_(ids)))
        await session.commit()
        removed["documents"] += deleted.rowcount  # another run may have taken some

    reports_before = now - timedelta(days=settings.report_retention_days)
    while reports := (
        await session.exec(
            select(Report).where(col(Report.completed_at) < reports_before).limit(CHUNK)
        )
    ).all():
        for report in reports:
            await remove_file(storage, "reports", report.stored_name)
        ids = [report.id for report in reports]
        deleted = await session.exec(delete(Report).where(col(Report.id).in_(ids)))
        await session.commit()
        removed["reports"] += deleted.rowcount

    jobs_before = now - timedelta(days=settings.job_retention_days)
    finished_long_ago = col(Job.status).in_(FINISHED) & (col(Job.finished_at) < jobs_before)
    while job_ids := (
        await session.exec(select(Job.id).where(finished_long_ago).limit(CHUNK))
    ).all():
        deleted = await session.exec(delete(Job).where(col(Job.id).in_(job_ids)))
        await session.commit()
        removed["jobs"] += deleted.rowcount

    logger.info(
        "cleanup removed %(documents)d documents, %(reports)d reports, %(jobs)d jobs", removed
    )
    return removed


def schedules(settings: Settings) -> list[Schedule]:
    """The periodic jobs, handed to the poller of every process that runs jobs."""
    if not settings.cleanup_interval_seconds:
        return []
    return [Schedule(cleanup, every_seconds=settings.cleanup_interval_seconds)]
