"""Reads of the job and executor tables, for the API, health checks, metrics and pollers.
Times are the database's."""

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, exists, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.jobs.registry import Schedule
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus


async def database_time(session: AsyncSession) -> datetime:
    return (await session.exec(select(clock.now()))).one()


async def get(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    statement = select(Job).where(col(Job.id) == job_id).execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


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


@dataclass(frozen=True)
class JobStats:
    queued: int
    running: int
    failed_last_hour: int
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
    failed_last_hour, oldest = failed.one(), await _oldest_queued_seconds(session)
    await session.commit()
    return JobStats(
        queued=by_status.get(JobStatus.QUEUED, 0),
        running=by_status.get(JobStatus.RUNNING, 0),
        failed_last_hour=failed_last_hour,
        oldest_queued_seconds=oldest,
    )


async def _oldest_queued_seconds(session: AsyncSession) -> float:
    """How long the job waiting longest since it came due has waited; 0 when none waits."""
    oldest = await session.exec(
        select(func.min(Job.run_after), clock.now()).where(
            col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= clock.now()
        )
    )
    oldest_due, now = oldest.one()
    return 0.0 if oldest_due is None else (now - oldest_due).total_seconds()


@dataclass(frozen=True)
class Overview:
    now: datetime
    # How many jobs there are of each task name and status.
    counts: dict[tuple[str, JobStatus], int]
    # The jobs that finished in each of the last 60 minutes, oldest first: (succeeded, failed).
    per_minute: list[tuple[int, int]]
    oldest_queued_seconds: float
    # The latest failures of the last hour, newest first.
    failures: Sequence[Job]
    executors: Sequence[Executor]

    @property
    def waiting_for_task(self) -> dict[str, int]:
        """Queued jobs by task, of the tasks no live executor knows."""
        if not self.executors:
            return {}
        known = {name for executor in self.executors for name in executor.tasks}
        return {
            name: count
            for (name, status), count in self.counts.items()
            if status == JobStatus.QUEUED and name not in known
        }


async def overview(session: AsyncSession, lease_seconds: float, failures: int = 10) -> Overview:
    """Everything the dashboard's first page shows, in six indexed queries."""
    counts = await session.exec(
        select(Job.name, Job.status, func.count()).group_by(col(Job.name), col(Job.status))
    )
    minute = clock.minutes_before_now(col(Job.finished_at)).label("minute")
    finished = await session.exec(
        select(minute, Job.status, func.count())
        .where(
            col(Job.finished_at) >= clock.now(-3600),
            col(Job.status).in_([JobStatus.SUCCEEDED, JobStatus.FAILED]),
        )
        .group_by(minute, col(Job.status))
    )
    per_minute = [[0, 0] for _ in range(60)]
    for minutes_ago, status, count in finished.all():
        per_minute[59 - min(minutes_ago, 59)][status == JobStatus.FAILED] += count
    latest_failures = await session.exec(
        select(Job)
        .where(col(Job.status) == JobStatus.FAILED, col(Job.finished_at) >= clock.now(-3600))
        .order_by(col(Job.finished_at).desc())
        .limit(failures)
    )
    return Overview(
        counts={(name, JobStatus(status)): count for name, status, count in counts.all()},
        per_minute=[(ok, bad) for ok, bad in per_minute],
        failures=latest_failures.all(),
        now=await database_time(session),
        oldest_queued_seconds=await _oldest_queued_seconds(session),
        executors=await live_executors(session, lease_seconds),
    )


# A queued job that names an executor waits for it: an earlier attempt of the job may
# still run there (cancelled, then retried at once). The executor lets go of it at its
# next heartbeat once that attempt has ended; a dead one's row is gone.
UNHELD = col(Job.executor_id).is_(None) | ~exists().where(col(Executor.id) == col(Job.executor_id))


async def due_job_ids(
    session: AsyncSession, limit: int, tasks: Collection[str], skip: Collection[uuid.UUID] = ()
) -> list[uuid.UUID]:
    """Ids of queued jobs of these tasks that are due, oldest first, leaving out those in
    `skip`."""
    statement = (
        select(Job.id)
        .where(
            col(Job.status) == JobStatus.QUEUED,
            col(Job.run_after) <= clock.now(),
            col(Job.name).in_(tasks),
            UNHELD,
        )
        .order_by(col(Job.run_after))
        .limit(limit + len(skip))
    )
    ids = (await session.exec(statement)).all()
    await session.commit()
    return [job_id for job_id in ids if job_id not in skip][:limit]


{%- if cookiecutter.job_backend == "rq" %}


async def queued_tasks(
    session: AsyncSession, job_ids: Collection[uuid.UUID]
) -> list[tuple[uuid.UUID, str, float]]:
    """Each of these jobs still queued, with its task's name and timeout."""
    statement = select(Job.id, Job.name, Job.timeout_seconds).where(
        col(Job.id).in_(job_ids), col(Job.status) == JobStatus.QUEUED
    )
    rows = (await session.exec(statement)).all()
    await session.commit()
    return [(job_id, name, timeout) for job_id, name, timeout in rows]
{%- elif cookiecutter.job_backend == "celery" %}


async def queued_tasks(
    session: AsyncSession, job_ids: Collection[uuid.UUID]
) -> list[tuple[uuid.UUID, str, float, datetime]]:
    """Each of these jobs still queued, with its task's name and timeout, and when it is
    due: each time a job is queued again (retried, given back, recovered), it changes."""
    statement = select(Job.id, Job.name, Job.timeout_seconds, Job.run_after).where(
        col(Job.id).in_(job_ids), col(Job.status) == JobStatus.QUEUED
    )
    rows = (await session.exec(statement)).all()
    await session.commit()
    return [(job_id, name, timeout, due) for job_id, name, timeout, due in rows]
{%- endif %}
{%- if cookiecutter.job_backend == "aiojobs" %}


async def backlog(session: AsyncSession) -> int:
    """Queued jobs that are due: waiting for an executor, in memory or only in the table."""
    due = await session.exec(
        select(func.count()).where(
            col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= clock.now()
        )
    )
    count = due.one()
    await session.commit()
    return count
{%- endif %}


async def known_tasks(session: AsyncSession, lease_seconds: float) -> set[str] | None:
    """The tasks the executors heard from within the lease run; None if none is heard."""
    alive = col(Executor.heartbeat_at) >= clock.now(-lease_seconds)
    lists = (await session.exec(select(Executor.tasks).where(alive))).all()
    await session.commit()
    return {name for names in lists for name in names} if lists else None


async def waiting_for_task(session: AsyncSession, lease_seconds: float) -> dict[str, int]:
    """Queued jobs by task, of the tasks no executor heard from within the lease knows:
    a rolling deploy under way, or a name no code registers any more. Empty while no
    executor is heard from at all: then every job waits, and /health/ready says so."""
    known = await known_tasks(session, lease_seconds)
    if known is None:
        return {}
    queued = await session.exec(
        select(Job.name, func.count())
        .where(col(Job.status) == JobStatus.QUEUED, col(Job.name).not_in(known))
        .group_by(col(Job.name))
    )
    counts = dict(queued.all())
    await session.commit()
    return counts


async def live_executors(session: AsyncSession, lease_seconds: float) -> Sequence[Executor]:
    """The executors heard from within the lease, oldest first."""
    alive = col(Executor.heartbeat_at) >= clock.now(-lease_seconds)
    statement = select(Executor).where(alive).order_by(col(Executor.started_at))
    executors = (await session.exec(statement)).all()
    await session.commit()
    return executors


@dataclass(frozen=True)
class ScheduleState:
    schedule: Schedule
    # The latest fire time up to now and the job it made (None if it was skipped, or is
    # about to be enqueued); then the next fire time.
    last_fire_at: datetime | None
    last_job: Job | None
    next_fire_at: datetime | None


async def schedule_states(
    session: AsyncSession, schedules: Sequence[Schedule]
) -> list[ScheduleState]:
    """Each schedule's fire times around the database's now, by id."""
    now, states = await database_time(session), []
    for schedule in sorted(schedules, key=lambda s: s.id):
        last = schedule.cron.last_fire(now)
        job = None
        if last is not None:
            by_key = select(Job).where(col(Job.idempotency_key) == schedule.key(last))
            job = (await session.exec(by_key)).first()
        states.append(ScheduleState(schedule, last, job, schedule.cron.next_fire(now)))
    await session.commit()
    return states
