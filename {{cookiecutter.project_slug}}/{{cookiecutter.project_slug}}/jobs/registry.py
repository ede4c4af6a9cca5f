"""Tasks: plain `async def` functions registered by name, with their defaults.

    # The welcome row's status follows the job if it fails, is cancelled or retried.
    welcome_row = Row(Welcome, unfinished=("queued",), failed="failed", cancelled="cancelled")

    @task(timeout_seconds=60, max_attempts=5, row=welcome_row)
    async def send_welcome(ctx: JobContext, welcome_id: str) -> dict[str, str]:
        ...  # sets the row's status to "sent" and commits, then returns

    @task(schedule="*/15 * * * *")  # or [Cron("0 9 * * 1-5", "Europe/Riga", {...}), ...]
    async def sync_prices(ctx: JobContext) -> None:
        ...

A task's arguments and result are JSON. It may run more than once (a retry, or a rerun
after its executor died), so it must be idempotent: check before doing, write with keys.
A task registered in a module of `tasks/` is known once `tasks/__init__.py` imports it.
"""

import asyncio
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from cronsim import CronSim, CronSimError
from sqlalchemy.sql.dml import Update
from sqlmodel import SQLModel, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.models import Job, JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings

ProgressReporter = Callable[[float, str | None], Awaitable[None]]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class JobContext:
    """What a running task is given besides its arguments."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    # The task's own session, closed after the task. Changes are written at commit (no
    # autoflush), so awaiting I/O between a change and its commit holds no write
    # transaction open; a flush or a statement of your own (an UPDATE) starts one: commit
    # before awaiting anything slow.
    session: AsyncSession
    settings: Settings
    _report_progress: ProgressReporter

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the job is (0..1); cheap to call often, written at most once a second."""
        await self._report_progress(min(max(fraction, 0.0), 1.0), message)

    async def to_thread(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`asyncio.to_thread` for the task's blocking work, whose cancellation (a timeout,
        a cancel of the job) waits for the thread: a thread cannot be stopped, and the
        attempt must not end, and let a retry start, while its work still runs."""
        thread = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
        try:
            return await asyncio.shield(thread)
        except asyncio.CancelledError:
            await asyncio.wait({thread})
            raise


class PermanentJobError(Exception):
    """Raise from a task when trying again cannot help: the job fails at once."""


# A failure's text, as a row keeps it: long enough to act on, short enough that an error
# carrying a whole payload does not fill the database.
FAILURE_TEXT_LIMIT = 2000


def storable_text(text: str) -> str:
    """The text with its NUL characters spelt out: {% if cookiecutter.database == "sqlite" %}a text column that stays portable
    to other databases holds none{% else %}PostgreSQL's text refuses them{% endif %}."""
    return text.replace("\x00", "\\x00")


def describe(error: BaseException) -> str:
    """`Type: message`, cut to FAILURE_TEXT_LIMIT characters: what a domain row stores."""
    text = storable_text(f"{type(error).__name__}: {error}")
    if len(text) <= FAILURE_TEXT_LIMIT:
        return text
    return text[: FAILURE_TEXT_LIMIT - 1] + "…"


TaskFunction = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class Row:
    """The row a task works on (an email, a document), found by its `job_id` column,
    whose `status` (and `error`, if it has one) follows the job wherever the job ends
    other than by the task's own success: its last attempt fails, it is cancelled,
    recovery gives it up after its process died, or a retry queues it again. Each of
    those moves updates the row in its own transaction (`follow`), so row and job never
    disagree.

    The status is kept on the row, not read from the job, because finished jobs are
    purged long before the rows they worked on. The task writes its success itself.
    """

    table: type[SQLModel]
    # The statuses while the job is queued or running; a retry sets the first again.
    unfinished: tuple[str, ...]
    failed: str
    cancelled: str
    # A column stamped when the job fails or is cancelled, cleared by a retry.
    ended_at: str | None = None

    def follow(self, job_ids: list[uuid.UUID], status: JobStatus, error: str | None) -> Update:
        columns = sa.inspect(self.table).columns
        values: dict[str, Any] = {"error": error} if "error" in columns else {}
        from_statuses: tuple[str, ...]
        if status == JobStatus.QUEUED:
            # Retried: the task sees its row unfinished again, and does its work again.
            from_statuses, values["status"] = (self.failed, self.cancelled), self.unfinished[0]
        else:
            from_statuses = self.unfinished
            values["status"] = self.failed if status == JobStatus.FAILED else self.cancelled
        if self.ended_at is not None:
            values[self.ended_at] = None if status == JobStatus.QUEUED else clock.now()
        return (
            update(self.table)
            .where(columns["job_id"].in_(job_ids), columns["status"].in_(from_statuses))
            .values(values)
            .execution_options(synchronize_session=False)
        )


async def follow(
    session: AsyncSession,
    jobs: Iterable[tuple[uuid.UUID, str]],
    status: JobStatus,
    error: str | None = None,
) -> None:
    """Bring the rows of these jobs (id, task name), just moved to `status` (failed,
    cancelled, or queued by a retry), in step; in the caller's transaction."""
    ids_by_row: defaultdict[Row, list[uuid.UUID]] = defaultdict(list)
    for job_id, name in jobs:
        task = TASKS.get(name)
        if task is not None and task.row is not None:
            ids_by_row[task.row].append(job_id)
    for row, ids in ids_by_row.items():
        await session.exec(row.follow(ids, status, error))


@dataclass(frozen=True)
class Cron:
    """When a schedule fires: a cron expression (five fields, or six with the seconds
    first) read in `timezone`, and the arguments of the jobs it makes."""

    expression: str
    timezone: str = "UTC"
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A bad schedule stops the import of its task, not a poll at run time.
        try:
            CronSim(self.expression, datetime.now(self.zone))
        except CronSimError as error:
            raise ValueError(f"cron expression {self.expression!r}: {error}") from None
        except ZoneInfoNotFoundError:
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        json.dumps(self.arguments)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def last_fire(self, now: datetime) -> datetime | None:
        """The latest fire time at or before `now`, in UTC; None if none in 50 years."""
        # Fire times are whole seconds: search backwards from the second after `now`.
        start = now.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        return _utc(next(CronSim(self.expression, start, reverse=True), None))

    def next_fire(self, now: datetime) -> datetime | None:
        """The first fire time after `now`, in UTC; None if none in 50 years."""
        return _utc(next(CronSim(self.expression, now.astimezone(self.zone)), None))


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


# When a task runs by itself: a cron expression (in UTC), several `Cron`s, or a function
# of the settings that gives an expression ("" for never).
ScheduleSpec = str | Sequence[Cron] | Callable[[Settings], str]


@dataclass(frozen=True)
class Task:
    name: str
    function: TaskFunction
    timeout_seconds: float
    max_attempts: int
    # The first retry waits about this long; each further one waits twice as long.
    backoff_seconds: float
    max_backoff_seconds: float
    row: Row | None = None
    schedule: ScheduleSpec | None = None

    def new_job(
        self,
        *,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        **arguments: Any,
    ) -> Job:
        """A queued job row for this task; add it to a session and submit it. It is due
        now, or at `run_at`, or `delay` after it is committed: one of them."""
        try:
            json.dumps(arguments)
        except (TypeError, ValueError) as error:
            raise TypeError(f"arguments of task {self.name!r} must be JSON: {error}") from error
        if run_at is not None and delay is not None:
            raise TypeError("a job is given run_at or delay, not both")
        if run_at is not None and run_at.utcoffset() is None:
            raise ValueError(f"naive run_at {run_at!r}: pass a timezone-aware datetime")
        job = Job(
            name=self.name,
            arguments=arguments,
            timeout_seconds=self.timeout_seconds,
            max_attempts=max_attempts or self.max_attempts,
            idempotency_key=idempotency_key,
        )
        if run_at is not None:
            job.run_after = run_at
        elif delay is not None:
            # A SQL expression: the database adds the delay to its own time at the INSERT.
            job.run_after = cast(datetime, clock.now(delay.total_seconds()))
        return job


TASKS: dict[str, Task] = {}


def task(
    *,
    name: str | None = None,
    timeout_seconds: float = 300.0,
    max_attempts: int = 3,
    backoff_seconds: float = 2.0,
    max_backoff_seconds: float = 600.0,
    row: Row | None = None,
    schedule: ScheduleSpec | None = None,
) -> Callable[[TaskFunction], Task]:
    """Register an `async def` as a task under its function name (or `name`); with a
    `row`, the row it works on follows its job's end; with a `schedule`, it also runs at
    each of its fire times, once however many processes run."""

    def register(function: TaskFunction) -> Task:
        registered = Task(
            name=name or function.__name__,
            function=function,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
            row=row,
            schedule=schedule,
        )
        if registered.name in TASKS:
            raise ValueError(f"a task named {registered.name!r} is already registered")
        TASKS[registered.name] = registered
        return registered

    return register


@dataclass(frozen=True)
class Schedule:
    """A job of `task` at each fire time of `cron`, once however many processes poll."""

    task: Task
    cron: Cron

    @property
    def id(self) -> str:
        """Names the schedule in its jobs' keys: a changed schedule is a new one."""
        cron = self.cron
        about = json.dumps([cron.expression, cron.timezone, cron.arguments], sort_keys=True)
        return f"{self.task.name}:{hashlib.sha256(about.encode()).hexdigest()[:12]}"

    def key(self, fire: datetime) -> str:
        """The idempotency key of the job for one fire time."""
        return f"schedule:{self.id}:{fire.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"

    def new_job(self, fire: datetime) -> Job:
        return self.task.new_job(idempotency_key=self.key(fire), run_at=fire, **self.cron.arguments)


def _crons(spec: ScheduleSpec, settings: Settings) -> Sequence[Cron]:
    if callable(spec):
        spec = spec(settings)
    if isinstance(spec, str):
        return [Cron(spec)] if spec else []
    return spec


def schedules(settings: Settings) -> list[Schedule]:
    """The schedules of the registered tasks, for the poller of every executor."""
    return [
        Schedule(task, cron)
        for task in TASKS.values()
        if task.schedule is not None
        for cron in _crons(task.schedule, settings)
    ]
