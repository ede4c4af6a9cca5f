"""Every change of a job's state, as one atomic UPDATE.

Each UPDATE names the state it expects in its WHERE clause, so when two processes race
for the same job exactly one of them changes it; the other sees a row count of 0.
Updates made by an executor also name the executor, so one that lost its job (the job
was cancelled, or run again elsewhere after its heartbeat stopped) changes nothing.
Every time compared or written here is the database's (`clock.now()`).
"""

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus

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


async def database_time(session: AsyncSession) -> datetime:
    return (await session.exec(select(clock.now()))).one()


async def register_executor(session: AsyncSession, executor: Executor) -> None:
    """Add this executor's row (again, after it was taken for dead), its heartbeat now."""
    session.add(executor)
    await session.commit()


async def heartbeat(session: AsyncSession, executor_id: uuid.UUID) -> set[uuid.UUID] | None:
    """Note that the executor is alive; return the ids of the jobs the table says it
    runs, or None when its row is gone: it was taken for dead and its jobs given away."""
    beat = await session.exec(
        update(Executor).where(col(Executor.id) == executor_id).values(heartbeat_at=clock.now())
    )
    held = None
    if beat.rowcount == 1:
        running = await session.exec(
            select(Job.id).where(
                col(Job.status) == JobStatus.RUNNING, col(Job.executor_id) == executor_id
            )
        )
        held = set(running.all())
    await session.commit()
    return held


async def remove_executor(session: AsyncSession, executor_id: uuid.UUID) -> None:
    await session.exec(delete(Executor).where(col(Executor.id) == executor_id))
    await session.commit()


async def live_executors(session: AsyncSession, lease_seconds: float) -> Sequence[Executor]:
    """The executors heard from within the lease, oldest first."""
    alive = col(Executor.heartbeat_at) >= clock.now(-lease_seconds)
    statement = select(Executor).where(alive).order_by(col(Executor.started_at))
    executors = (await session.exec(statement)).all()
    await session.commit()
    return executors


# The statements every job runs are built once and their values bound at each execution:
# building a statement costs more than running it. They run in the runner's own short
# sessions, which hold no job object to keep in step, so they skip that synchronisation.
_CLAIM = (
    update(Job)
    .where(
        col(Job.id).in_(bindparam("job_ids", expanding=True)),
        col(Job.status) == JobStatus.QUEUED,
        col(Job.run_after) <= clock.now(),
    )
    .values(
        status=JobStatus.RUNNING,
        attempts=col(Job.attempts) + 1,
        executor_id=bindparam("holder"),
        started_at=clock.now(),
    )
    # The claimed rows come back with the UPDATE: no SELECT after it.
    .returning(Job)
    .execution_options(populate_existing=True, synchronize_session=False)
)


async def claim(
    session: AsyncSession, job_ids: Collection[uuid.UUID], executor_id: uuid.UUID
) -> list[Job]:
    """Start the next attempt of each of these jobs that is queued and due, held by
    this executor; those not claimable (not due, taken by another executor, finished
    or cancelled) are left out."""
    params = {"job_ids": list(job_ids), "holder": executor_id}
    jobs = list((await session.exec(_CLAIM, params=params)).scalars())
    await session.commit()
    return jobs


def _held(job_id: uuid.UUID, executor_id: uuid.UUID) -> tuple[Any, ...]:
    """The job, still running on this executor."""
    return (
        col(Job.id) == job_id,
        col(Job.executor_id) == executor_id,
        col(Job.status) == JobStatus.RUNNING,
    )


async def record_progress(
    session: AsyncSession,
    job_id: uuid.UUID,
    executor_id: uuid.UUID,
    fraction: float,
    message: str | None,
) -> None:
    await session.exec(
        update(Job)
        .where(*_held(job_id, executor_id))
        .values(progress=fraction, progress_message=message)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


@dataclass(frozen=True)
class Success:
    job_id: uuid.UUID
    result: Any


_SUCCEED = (
    update(Job)
    .where(
        col(Job.id) == bindparam("job"),
        col(Job.executor_id) == bindparam("holder"),
        col(Job.status) == JobStatus.RUNNING,
    )
    .values(
        status=JobStatus.SUCCEEDED,
        result=bindparam("result"),
        progress=1.0,
        error_type=None,
        error_message=None,
        finished_at=clock.now(),
    )
)


async def record_successes(
    session: AsyncSession, executor_id: uuid.UUID, successes: Sequence[Success]
) -> list[bool]:
    """Record these results in one transaction; for each, whether the executor still
    held the job (one cancelled or run elsewhere meanwhile keeps the state it has)."""
    rows = [
        {"job": done.job_id, "holder": executor_id, "result": done.result} for done in successes
    ]
    # One statement run for every row (executemany), where the ORM would send one each.
    await (await session.connection()).execute(_SUCCEED, rows)
    # executemany counts no rows one by one. A job this executor holds is run by one of
    # its attempts at a time, so a succeeded row naming it is the one just written.
    changed = await session.exec(
        select(Job.id).where(
            col(Job.id).in_([done.job_id for done in successes]),
            col(Job.status) == JobStatus.SUCCEEDED,
            col(Job.executor_id) == executor_id,
        )
    )
    recorded = set(changed.all())
    await session.commit()
    return [done.job_id in recorded for done in successes]


def _error_values(error: BaseException) -> dict[str, Any]:
    return {
        "error_type": type(error).__name__,
        "error_message": (str(error) or repr(error))[:ERROR_MESSAGE_LIMIT],
    }


async def record_failure(
    session: AsyncSession,
    job_id: uuid.UUID,
    executor_id: uuid.UUID,
    error: BaseException,
    retry_in_seconds: float | None,
) -> bool:
    """Queue the next attempt after `retry_in_seconds`, or fail the job when it is None;
    whether the executor still held the job."""
    if retry_in_seconds is None:
        values = {"status": JobStatus.FAILED, "finished_at": clock.now()}
    else:
        values = {"status": JobStatus.QUEUED, "run_after": clock.now(retry_in_seconds)}
    changed = await session.exec(
        update(Job)
        .where(*_held(job_id, executor_id))
        .values(**values, **_error_values(error))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return changed.rowcount == 1


async def release(
    session: AsyncSession, executor_id: uuid.UUID, job_ids: Collection[uuid.UUID] | None = None
) -> int:
    """Give back the jobs this executor holds (or those of them in `job_ids`): queued
    again at once, the interrupted attempt not counted."""
    held = (col(Job.executor_id) == executor_id) & (col(Job.status) == JobStatus.RUNNING)
    if job_ids is not None:
        held &= col(Job.id).in_(job_ids)
    released = await session.exec(
        update(Job)
        .where(held)
        .values(
            status=JobStatus.QUEUED,
            attempts=col(Job.attempts) - 1,
            run_after=clock.now(),
            executor_id=None,
        )
    )
    await session.commit()
    return released.rowcount


async def recover_stalled_jobs(
    session: AsyncSession, lease_seconds: float
) -> tuple[list[str], list[str]]:
    """Requeue running jobs whose executor has not been heard from within the lease (it
    crashed, was killed or cut off), or fail them when that was their last attempt, and
    forget those executors. Returns the names of the jobs requeued and of those failed."""
    alive = select(Executor.id).where(col(Executor.heartbeat_at) >= clock.now(-lease_seconds))
    stalled = (col(Job.status) == JobStatus.RUNNING) & col(Job.executor_id).not_in(alive)
    # Each statement states its own attempts condition: a job that stalls between the
    # two (each sees newly committed rows) is then handled right by either.
    failed = await session.exec(
        update(Job)
        .where(stalled & (col(Job.attempts) >= col(Job.max_attempts)))
        .values(
            status=JobStatus.FAILED,
            error_type="ExecutorLost",
            error_message="the process running the job stopped during its last attempt",
            finished_at=clock.now(),
        )
        .returning(col(Job.name))
    )
    failed_names = list(failed.scalars())
    requeued = await session.exec(
        update(Job)
        .where(stalled & (col(Job.attempts) < col(Job.max_attempts)))
        .values(status=JobStatus.QUEUED, run_after=clock.now(), executor_id=None)
        .returning(col(Job.name))
    )
    requeued_names = list(requeued.scalars())
    await session.exec(
        delete(Executor).where(col(Executor.heartbeat_at) < clock.now(-lease_seconds))
    )
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
            col(Job.status) == JobStatus.FAILED, col(Job.finished_at) >= clock.now(-3600)
        )
    )
    oldest = await session.exec(
        select(func.min(Job.run_after), clock.now()).where(
            col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= clock.now()
        )
    )
    failed_last_hour, (oldest_due, now) = failed.one(), oldest.one()
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
        .where(col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= clock.now())
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
        finished_at=clock.now(),
    )


async def retry(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Queue a failed or cancelled job again, same id, with its attempts starting over."""
    return await _move(
        session,
        job_id,
        [JobStatus.FAILED, JobStatus.CANCELLED],
        status=JobStatus.QUEUED,
        attempts=0,
        run_after=clock.now(),
        executor_id=None,
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
