"""The periodic cleanup: archived documents, finished jobs and reports past their retention.

Deletes in bounded chunks (short transactions, bounded memory), files before rows, and
goes on when a file is already gone. It runs on the CLEANUP_SCHEDULE, once per fire time
however many processes run.
"""

import logging
from datetime import timedelta
from typing import Any, TypeVar

import anyio
from sqlmodel import col, delete, select

from {{ cookiecutter.project_slug }}.jobs import moves
from {{ cookiecutter.project_slug }}.jobs.registry import JobContext, task
from {{ cookiecutter.project_slug }}.models import Document, Report, utcnow
from {{ cookiecutter.project_slug }}.storage import Storage

logger = logging.getLogger(__name__)

CHUNK = 500


Expiring = TypeVar("Expiring", Document, Report)


async def remove_expired(ctx: JobContext, model: type[Expiring], expired: Any, folder: str) -> int:
    """Delete the rows matching `expired` and their files, a chunk at a time."""
    storage, removed = Storage(ctx.settings.storage_dir), 0
    while rows := (await ctx.session.exec(select(model).where(expired).limit(CHUNK))).all():
        for row in rows:
            if row.stored_name:  # files first: a row never points at a deleted file
                await anyio.Path(storage.path(folder, row.stored_name)).unlink(missing_ok=True)
        ids = [row.id for row in rows]
        deleted = await ctx.session.exec(delete(model).where(col(model.id).in_(ids)))
        await ctx.session.commit()
        removed += deleted.rowcount  # another run may have taken some
    return removed


@task(timeout_seconds=3600, max_attempts=3, schedule=lambda settings: settings.cleanup_schedule)
async def cleanup(ctx: JobContext) -> dict[str, int]:
    settings, now = ctx.settings, utcnow()
    documents_before = now - timedelta(days=settings.document_retention_days)
    reports_before = now - timedelta(days=settings.report_retention_days)
    removed = {
        "documents": await remove_expired(
            ctx, Document, col(Document.archived_at) < documents_before, "documents"
        ),
        "reports": await remove_expired(
            ctx, Report, col(Report.completed_at) < reports_before, "reports"
        ),
        "jobs": await moves.purge_finished(
            ctx.session, now - timedelta(days=settings.job_retention_days)
        ),
    }

    logger.info(
        "cleanup removed %(documents)d documents, %(reports)d reports, %(jobs)d jobs", removed
    )
    return removed
