"""Tasks: plain `async def` functions registered by name, with their defaults.

    async def welcome_failed(ctx: JobContext, error: BaseException, user_id: str) -> None:
        ...  # the job failed for good: say so on the user's row

    @task(timeout_seconds=60, max_attempts=5, on_failure=welcome_failed)
    async def send_welcome(ctx: JobContext, user_id: str) -> dict[str, str]:
        ...

    @task(schedule="*/15 * * * *")  # or [Cron("0 9 * * 1-5", "Europe/Riga", {...}), ...]
    async def sync_prices(ctx: JobContext) -> None:
        ...

A task's arguments and result are JSON. It may run more than once (a retry, or a rerun
after its executor died), so it must be idempotent: check before doing, write with keys.
A task registered in a module of `tasks/` is known once `tasks/__init__.py` imports it.
"""

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings

ProgressReporter = Callable[[float, str | None], Awaitable[None]]


@dataclass(frozen=True)
class JobContext:
    """What a running task is given besides its arguments."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    # The task's own session: commit what the task writes; it is closed after the task.
    session: AsyncSession
    settings: Settings
    _report_progress: ProgressReporter

    @property
    def last_attempt(self) -> bool:
        """No retry follows if this attempt fails."""
        return self.attempt >= self.max_attempts

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the job is (0..1); cheap to call often, written at most once a second."""
        await self._report_progress(min(max(fraction, 0.0), 1.0), message)


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


TaskFunction = Callable[..., Awaitable[Any]]
# Called with the context, the error and the job's arguments when a job fails for good
# (its last attempt failed, or it raised PermanentJobError), in a session of its own.
FailureHook = Callable[..., Awaitable[None]]


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
    on_failure: FailureHook | None = None
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
    on_failure: FailureHook | None = None,
    schedule: ScheduleSpec | None = None,
) -> Callable[[TaskFunction], Task]:
    """Register an `async def` as a task under its function name (or `name`); with a
    `schedule`, it also runs at each of its fire times, once however many processes run."""

    def register(function: TaskFunction) -> Task:
        registered = Task(
            name=name or function.__name__,
            function=function,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
            on_failure=on_failure,
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
