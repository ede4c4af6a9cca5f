"""What an executor writes: its own row and heartbeat, and each job it claims, runs and
finishes, every change one atomic UPDATE.

Each UPDATE names the state it expects, and the executor, in its WHERE clause: when two
processes race for a job exactly one changes it, and an executor that lost its job (it
was cancelled, or run again elsewhere after the heartbeat stopped) changes nothing.
Every time compared or written is the database's (`clock.now()`).
"""

import functools
import traceback
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.sql.dml import ReturningUpdate
from sqlmodel import col, delete, exists, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.jobs.reads import UNHELD
from {{ cookiecutter.project_slug }}.jobs.registry import describe, follow, storable_text
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus


async def register_executor(session: AsyncSession, executor: Executor) -> None:
    """Add this executor's row (again, after it was taken for dead), its heartbeat now."""
    session.add(executor)
    await session.commit()


async def heartbeat(
    session: AsyncSession, executor_id: uuid.UUID, here: Collection[uuid.UUID]
) -> set[uuid.UUID] | None:
    """Note that the executor is alive, and let go of the queued jobs it holds that have
    no attempt `here` any more (one cancelled, then retried); return the ids of the jobs
    the table says it runs, or None when its row is gone: it was taken for dead and its
    jobs given away."""
    beat = await session.exec(
        update(Executor).where(col(Executor.id) == executor_id).values(heartbeat_at=clock.now())
    )
    held = None
    if beat.rowcount == 1:
        await session.exec(
            update(Job)
            .where(
                col(Job.status) == JobStatus.QUEUED,
                col(Job.executor_id) == executor_id,
                col(Job.id).not_in(here),
            )
            .values(executor_id=None)
        )
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


# The statements every job runs are built once and their values bound at each execution:
# building a statement costs more than running it. They run in the runner's own short
# sessions, which hold no job object to keep in step, so they skip that synchronisation.
@functools.cache
def _claim_statement(fresh_seconds: float) -> ReturningUpdate[Job]:
    return (
        update(Job)
        .where(
            col(Job.id).in_(bindparam("job_ids", expanding=True)),
            col(Job.status) == JobStatus.QUEUED,
            # A task this process does not know waits for one that does (a deploy).
            col(Job.name).in_(bindparam("tasks", expanding=True)),
            col(Job.run_after) <= clock.now(),
            # Not while an earlier attempt may still run elsewhere; here, run() starts
            # no attempt beside one still running.
            UNHELD | (col(Job.executor_id) == bindparam("holder")),
            # Only while the claimer's heartbeat is fresh: one taken for dead, or close
            # to it, would otherwise start jobs that any poller queues again at once.
            exists().where(
                col(Executor.id) == bindparam("holder"),
                col(Executor.heartbeat_at) >= clock.now(-fresh_seconds),
            ),
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
    session: AsyncSession,
    job_ids: Collection[uuid.UUID],
    executor_id: uuid.UUID,
    fresh_seconds: float,
    tasks: Sequence[str],
) -> list[Job]:
    """Start the next attempt of each of these jobs that is queued and due, of one of
    `tasks`, held by this executor, if its heartbeat is under `fresh_seconds` old; those
    not claimable (not due, taken by another executor, finished or cancelled, of another
    task) are left out."""
    params = {"job_ids": list(job_ids), "holder": executor_id, "tasks": tasks}
    jobs = list((await session.exec(_claim_statement(fresh_seconds), params=params)).scalars())
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
        error_traceback=None,
        finished_at=clock.now(),
    )
)


# Which of the jobs just recorded succeeded here: executemany counts no rows one by one.
# A job this executor holds is run by one of its attempts at a time, so a succeeded row
# naming it is the one just written.
_SUCCEEDED_HERE = select(Job.id).where(
    col(Job.id).in_(bindparam("jobs", expanding=True)),
    col(Job.status) == JobStatus.SUCCEEDED,
    col(Job.executor_id) == bindparam("holder"),
)


async def record_successes(
    session: AsyncSession, executor_id: uuid.UUID, successes: Sequence[Success]
) -> list[bool]:
    """Record these results in one transaction; for each, whether the executor still
    held the job (one cancelled or run elsewhere meanwhile keeps the state it has)."""
    rows = [
        {"job": done.job_id, "holder": executor_id, "result": done.result} for done in successes
    ]
    connection = await session.connection()
    if len(rows) == 1:
        # A lone result, as under light load: its UPDATE's count is the answer, at half
        # the CPU of asking after it.
        recorded = [(await connection.execute(_SUCCEED, rows[0])).rowcount == 1]
    else:
        # One statement run for every row (executemany), where the ORM would send one each.
        await connection.execute(_SUCCEED, rows)
        ids = [done.job_id for done in successes]
        here = await connection.execute(_SUCCEEDED_HERE, {"jobs": ids, "holder": executor_id})
        held = set(here.scalars())
        recorded = [job_id in held for job_id in ids]
    await session.commit()
    return recorded


ERROR_MESSAGE_LIMIT = 2000
# The innermost frames are the telling ones: a longer traceback keeps its end.
TRACEBACK_LIMIT = 20_000


def _error_values(error: BaseException) -> dict[str, Any]:
    message = storable_text(str(error) or repr(error))
    return {
        "error_type": type(error).__name__,
        "error_message": message[:ERROR_MESSAGE_LIMIT],
        "error_traceback": storable_text("".join(traceback.format_exception(error)))[
            -TRACEBACK_LIMIT:
        ],
    }


async def record_failure(
    session: AsyncSession,
    job_id: uuid.UUID,
    executor_id: uuid.UUID,
    error: BaseException,
    retry_in_seconds: float | None,
) -> bool:
    """Queue the next attempt after `retry_in_seconds`, or fail the job (and its task's
    row) when it is None; whether the executor still held the job."""
    if retry_in_seconds is None:
        values = {"status": JobStatus.FAILED, "finished_at": clock.now()}
    else:
        # The attempt has ended: any executor may run the next.
        values = {
            "status": JobStatus.QUEUED,
            "run_after": clock.now(retry_in_seconds),
            "executor_id": None,
        }
    changed = await session.exec(
        update(Job)
        .where(*_held(job_id, executor_id))
        .values(**values, **_error_values(error))
        .returning(col(Job.name))
        .execution_options(synchronize_session=False)
    )
    name = changed.scalar_one_or_none()
    if name is not None and retry_in_seconds is None:
        await follow(session, [(job_id, name)], JobStatus.FAILED, describe(error))
    await session.commit()
    return name is not None


async def release(
    session: AsyncSession,
    executor_id: uuid.UUID,
    job_ids: Collection[uuid.UUID],
    give_back_attempt: bool = True,
) -> int:
    """Give back these jobs, if this executor holds them: queued again at once. An
    attempt a shutdown interrupted is given back (not counted); one that ended here
    without its outcome recorded is not, so that no job repeats without bound."""
    held = (
        (col(Job.executor_id) == executor_id)
        & (col(Job.status) == JobStatus.RUNNING)
        & col(Job.id).in_(job_ids)
    )
    attempts = col(Job.attempts) - 1 if give_back_attempt else col(Job.attempts)
    released = await session.exec(
        update(Job)
        .where(held)
        .values(
            status=JobStatus.QUEUED,
            attempts=attempts,
            run_after=clock.now(),
            executor_id=None,
        )
    )
    await session.commit()
    return released.rowcount
