"""What clients do to jobs: submit under an idempotency key, cancel, retry, purge. Each
move is one UPDATE that names the statuses it leaves, so racing requests move a job once;
the row its task works on follows in the same transaction (registry.Row)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.jobs.registry import follow
from {{ cookiecutter.project_slug }}.models import Job, JobStatus


async def find_by_key(session: AsyncSession, idempotency_key: str) -> Job | None:
    return (await session.exec(select(Job).where(Job.idempotency_key == idempotency_key))).first()


async def add_unless_duplicate(session: AsyncSession, job: Job) -> tuple[Job, bool]:
    """Commit the job (with whatever else the session holds); on a duplicate idempotency
    key roll all of it back and return the job that holds the key, and False."""
    session.add(job)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = await find_by_key(session, job.idempotency_key) if job.idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return job, True


async def _move(
    session: AsyncSession, job_id: uuid.UUID, from_statuses: list[JobStatus], **values: Any
) -> bool:
    moved = await session.exec(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status).in_(from_statuses))
        .values(**values)
        .returning(col(Job.name))
    )
    name = moved.scalar_one_or_none()
    if name is not None:
        await follow(session, [(job_id, name)], values["status"])
    await session.commit()
    return name is not None


async def cancel(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Cancel a queued or running job; a running one stops when its executor notices."""
    return await _move(
        session,
        job_id,
        [JobStatus.QUEUED, JobStatus.RUNNING],
        status=JobStatus.CANCELLED,
        finished_at=clock.now(),
    )


def _fresh_start() -> dict[str, Any]:
    return {
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "lost_attempts": 0,
        "run_after": clock.now(),
        # executor_id stays: the attempt the job was cancelled or failed in may still be
        # ending there, and the job waits for it (reads.UNHELD).
        "result": None,
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
        "progress": 0.0,
        "progress_message": None,
        "started_at": None,
        "finished_at": None,
    }


async def retry(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Queue a failed or cancelled job again, same id, with its attempts starting over."""
    return await _move(session, job_id, [JobStatus.FAILED, JobStatus.CANCELLED], **_fresh_start())


async def retry_failed(session: AsyncSession, name: str | None = None) -> int:
    """Queue every failed job (of the task `name`) again, as `retry` does; how many."""
    failed = col(Job.status) == JobStatus.FAILED
    if name is not None:
        failed &= col(Job.name) == name
    retried = await session.exec(
        update(Job).where(failed).values(**_fresh_start()).returning(col(Job.id), col(Job.name))
    )
    jobs = [(job_id, name) for job_id, name in retried]
    await follow(session, jobs, JobStatus.QUEUED)
    await session.commit()
    return len(jobs)


FINISHED = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
PURGE_CHUNK = 500


async def purge_finished(session: AsyncSession, before: datetime) -> int:
    """Delete the jobs that finished before `before`, a chunk per transaction; how many."""
    finished_long_ago = col(Job.status).in_(FINISHED) & (col(Job.finished_at) < before)
    chunk, purged = select(Job.id).where(finished_long_ago).limit(PURGE_CHUNK), 0
    while ids := (await session.exec(chunk)).all():
        deleted = await session.exec(delete(Job).where(col(Job.id).in_(ids)))
        await session.commit()
        purged += deleted.rowcount  # another purge may have taken some
    return purged
