"""Every change of a job's state, as one atomic UPDATE.

Each UPDATE names the state it expects in its WHERE clause, so when two processes race
for the same job exactly one of them changes it; the other sees a row count of 0.
Updates made by an executor also name its lease, so an executor that lost its lease
(the job was cancelled, or rerun elsewhere after the lease expired) changes nothing.
"""

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.models import Job, JobStatus, utcnow

ERROR_MESSAGE_LIMIT = 2000


async def get(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    statement = select(Job).where(col(Job.id) == job_id).execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


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


# The statements every job runs are built once and their values bound at each execution:
# building a statement costs more than running it. They run in the runner's own short
# sessions, which hold no job object to keep in step, so they skip that synchronisation.
_CLAIM = (
    update(Job)
    .where(
        col(Job.id).in_(bindparam("job_ids", expanding=True)),
        col(Job.status) == JobStatus.QUEUED,
        col(Job.run_after) <= bindparam("now"),
    )
    .values(
        status=JobStatus.RUNNING,
        attempts=col(Job.attempts) + 1,
        lease_owner=bindparam("lease"),
        lease_expires_at=bindparam("expires"),
        started_at=bindparam("now"),
    )
    # The claimed rows come back with the UPDATE: no SELECT after it.
    .returning(Job)
    .execution_options(populate_existing=True, synchronize_session=False)
)


async def claim(
    session: AsyncSession, job_ids: Collection[uuid.UUID], lease: str, lease_seconds: float
) -> list[Job]:
    """Start the next attempt of each of these jobs that is queued and due, all under
    `lease`; those not claimable (not due, taken by another executor, finished or
    cancelled) are left out. Updates that follow name the job as well as the lease."""
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    params = {"job_ids": list(job_ids), "now": now, "lease": lease, "expires": expires}
    jobs = list((await session.exec(_CLAIM, params=params)).scalars())
    await session.commit()
    return jobs


# The job named by the parameter `job_id`, still running under the lease `lease`.
_HELD = (
    col(Job.id) == bindparam("job_id"),
    col(Job.lease_owner) == bindparam("lease"),
    col(Job.status) == JobStatus.RUNNING,
)


@cache
def _held_update(columns: frozenset[str]) -> Update:
    """Set `columns` of the job held under a lease, each from the parameter `set_<column>`."""
    return (
        update(Job)
        .where(*_HELD)
        .values({column: bindparam(f"set_{column}") for column in columns})
        .execution_options(synchronize_session=False)
    )


async def _update_held(session: AsyncSession, job_id: uuid.UUID, lease: str, **values: Any) -> bool:
    params = {f"set_{column}": value for column, value in values.items()}
    statement = _held_update(frozenset(values))
    changed = await session.exec(statement, params={"job_id": job_id, "lease": lease, **params})
    await session.commit()
    return changed.rowcount == 1


async def renew_leases(
    session: AsyncSession, held: Mapping[uuid.UUID, str], lease_seconds: float
) -> set[uuid.UUID]:
    """Extend the leases of these running jobs (id to lease); return the ids of those no
    longer held (cancelled, or run again elsewhere after their lease ran out)."""
    leases = set(held.values())
    running = col(Job.lease_owner).in_(leases) & (col(Job.status) == JobStatus.RUNNING)
    expires = utcnow() + timedelta(seconds=lease_seconds)
    await session.exec(update(Job).where(running).values(lease_expires_at=expires))
    # Jobs claimed together share a lease, so what is still held is told by id and lease.
    rows = (await session.exec(select(Job.id, Job.lease_owner).where(running))).all()
    await session.commit()
    still_held = {job_id for job_id, lease in rows if held.get(job_id) == lease}
    return set(held) - still_held


async def record_progress(
    session: AsyncSession, job_id: uuid.UUID, lease: str, fraction: float, message: str | None
) -> None:
    await _update_held(session, job_id, lease, progress=fraction, progress_message=message)


@dataclass(frozen=True)
class Success:
    job_id: uuid.UUID
    lease: str
    result: Any


_SUCCEED = (
    update(Job)
    .where(*_HELD)
    .values(
        status=JobStatus.SUCCEEDED,
        result=bindparam("result"),
        progress=1.0,
        error_type=None,
        error_message=None,
        lease_owner=None,
        lease_expires_at=None,
        finished_at=bindparam("finished_at"),
    )
)


async def record_successes(session: AsyncSession, successes: Sequence[Success]) -> list[bool]:
    """Record these results in one transaction; for each, whether its lease still held
    (a job cancelled or lost meanwhile keeps the state it has)."""
    finished_at = utcnow()
    rows = [
        {
            "job_id": done.job_id,
            "lease": done.lease,
            "result": done.result,
            "finished_at": finished_at,
        }
        for done in successes
    ]
    # One statement run for every row (executemany), where the ORM would send one each.
    await (await session.connection()).execute(_SUCCEED, rows)
    # executemany counts no rows one by one; a row it changed carries its finished_at.
    ids = [done.job_id for done in successes]
    changed = await session.exec(
        select(Job.id).where(
            col(Job.id).in_(ids),
            col(Job.status) == JobStatus.SUCCEEDED,
            col(Job.finished_at) == finished_at,
        )
    )
    recorded = set(changed.all())
    await session.commit()
    return [done.job_id in recorded for done in successes]


async def record_failure(
    session: AsyncSession,
    job_id: uuid.UUID,
    lease: str,
    error: BaseException,
    retry_in_seconds: float | None,
) -> bool:
    """Queue the next attempt after `retry_in_seconds`, or fail the job when it is None."""
    now = utcnow()
    error_values: dict[str, Any] = {
        "error_type": type(error).__name__,
        "error_message": (str(error) or repr(error))[:ERROR_MESSAGE_LIMIT],
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if retry_in_seconds is None:
        return await _update_held(
            session, job_id, lease, status=JobStatus.FAILED, finished_at=now, **error_values
        )
    return await _update_held(
        session,
        job_id,
        lease,
        status=JobStatus.QUEUED,
        run_after=now + timedelta(seconds=retry_in_seconds),
        **error_values,
    )


async def release(session: AsyncSession, leases: Collection[str]) -> int:
    """Give interrupted attempts back (shutdown): queued again, the attempt not counted."""
    released = await session.exec(
        update(Job)
        .where(col(Job.lease_owner).in_(leases), col(Job.status) == JobStatus.RUNNING)
        .values(
            status=JobStatus.QUEUED,
            attempts=col(Job.attempts) - 1,
            run_after=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    await session.commit()
    return released.rowcount


async def recover_expired_leases(session: AsyncSession) -> tuple[list[str], list[str]]:
    """Requeue running jobs whose executor stopped renewing its lease (it crashed or was
    killed), or fail them when that was their last attempt. Returns the names of the
    jobs requeued and of those failed."""
    now = utcnow()
    expired = (col(Job.status) == JobStatus.RUNNING) & (col(Job.lease_expires_at) < now)
    # Each statement states its own attempts condition: a lease that expires between
    # the two (each sees newly committed rows) is then handled right by either.
    failed = await session.exec(
        update(Job)
        .where(expired & (col(Job.attempts) >= col(Job.max_attempts)))
        .values(
            status=JobStatus.FAILED,
            error_type="LeaseExpired",
            error_message="the process running the job stopped during its last attempt",
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
        )
        .returning(col(Job.name))
    )
    failed_names = list(failed.scalars())
    requeued = await session.exec(
        update(Job)
        .where(expired & (col(Job.attempts) < col(Job.max_attempts)))
        .values(status=JobStatus.QUEUED, run_after=now, lease_owner=None, lease_expires_at=None)
        .returning(col(Job.name))
    )
    requeued_names = list(requeued.scalars())
    await session.commit()
    return requeued_names, failed_names


@dataclass(frozen=True)
class JobStats:
    queued: int
    running: int
    failed_last_hour: int
    # How long the job waiting longest since it came due has waited; 0 when none waits.
    oldest_queued_seconds: float


async def stats(session: AsyncSession) -> JobStats:
    """The state of the queue, across every process, for health checks and metrics."""
    now = utcnow()
    by_status = dict(
        (
            await session.exec(
                select(Job.status, func.count())
                .where(col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                .group_by(col(Job.status))
            )
        ).all()
    )
    failed = await session.exec(
        select(func.count()).where(
            col(Job.status) == JobStatus.FAILED, col(Job.finished_at) >= now - timedelta(hours=1)
        )
    )
    oldest = await session.exec(
        select(func.min(Job.run_after)).where(
            col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= now
        )
    )
    failed_last_hour, oldest_due = failed.one(), oldest.one()
    await session.commit()
    return JobStats(
        queued=by_status.get(JobStatus.QUEUED, 0),
        running=by_status.get(JobStatus.RUNNING, 0),
        failed_last_hour=failed_last_hour,
        oldest_queued_seconds=0.0 if oldest_due is None else (now - oldest_due).total_seconds(),
    )


async def due_job_ids(
    session: AsyncSession, limit: int, skip: Collection[uuid.UUID] = ()
) -> list[uuid.UUID]:
    """Ids of queued jobs that are due, oldest first, leaving out those in `skip`."""
    statement = (
        select(Job.id)
        .where(col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= utcnow())
        .order_by(col(Job.run_after))
        .limit(limit + len(skip))
    )
    ids = (await session.exec(statement)).all()
    await session.commit()
    return [job_id for job_id in ids if job_id not in skip][:limit]


async def _move(
    session: AsyncSession, job_id: uuid.UUID, from_statuses: list[JobStatus], **values: Any
) -> bool:
    moved = await session.exec(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status).in_(from_statuses))
        .values(**values)
    )
    await session.commit()
    return moved.rowcount == 1


async def cancel(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Cancel a queued or running job; a running one stops when its executor notices."""
    return await _move(
        session,
        job_id,
        [JobStatus.QUEUED, JobStatus.RUNNING],
        status=JobStatus.CANCELLED,
        lease_owner=None,
        lease_expires_at=None,
        finished_at=utcnow(),
    )


async def retry(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Queue a failed or cancelled job again, same id, with its attempts starting over."""
    return await _move(
        session,
        job_id,
        [JobStatus.FAILED, JobStatus.CANCELLED],
        status=JobStatus.QUEUED,
        attempts=0,
        run_after=utcnow(),
        result=None,
        error_type=None,
        error_message=None,
        progress=0.0,
        progress_message=None,
        started_at=None,
        finished_at=None,
    )


async def page(
    session: AsyncSession,
    *,
    status: JobStatus | None,
    name: str | None,
    limit: int,
    offset: int,
) -> Sequence[Job]:
    """Jobs newest first, optionally of one status and one task name."""
    statement = select(Job)
    if status is not None:
        statement = statement.where(col(Job.status) == status)
    if name is not None:
        statement = statement.where(col(Job.name) == name)
    statement = statement.order_by(col(Job.created_at).desc(), col(Job.id)).offset(offset)
    return (await session.exec(statement.limit(limit))).all()
