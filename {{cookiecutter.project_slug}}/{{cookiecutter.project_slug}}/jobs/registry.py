"""Tasks: plain `async def` functions registered by name, with their defaults.

    async def welcome_failed(ctx: JobContext, error: BaseException, user_id: str) -> None:
        ...  # the job failed for good: say so on the user's row

    @task(timeout_seconds=60, max_attempts=5, on_failure=welcome_failed)
    async def send_welcome(ctx: JobContext, user_id: str) -> dict[str, str]:
        ...

A task's arguments and result are JSON. It may run more than once (a retry, or a rerun
after its executor died), so it must be idempotent: check before doing, write with keys.
A task registered in a module of `tasks/` is known once `tasks/__init__.py` imports it.
"""

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

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


TaskFunction = Callable[..., Awaitable[Any]]
# Called with the context, the error and the job's arguments when a job fails for good
# (its last attempt failed, or it raised PermanentJobError), in a session of its own.
FailureHook = Callable[..., Awaitable[None]]
# How often a periodic task runs, read from the settings; 0 or less: never.
Period = Callable[[Settings], float]


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
    every: Period | None = None

    def new_job(
        self,
        *,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        **arguments: Any,
    ) -> Job:
        """A queued job row for this task; add it to a session and submit it."""
        try:
            json.dumps(arguments)
        except (TypeError, ValueError) as error:
            raise TypeError(f"arguments of task {self.name!r} must be JSON: {error}") from error
        return Job(
            name=self.name,
            arguments=arguments,
            timeout_seconds=self.timeout_seconds,
            max_attempts=max_attempts or self.max_attempts,
            idempotency_key=idempotency_key,
        )


TASKS: dict[str, Task] = {}


def task(
    *,
    name: str | None = None,
    timeout_seconds: float = 300.0,
    max_attempts: int = 3,
    backoff_seconds: float = 2.0,
    max_backoff_seconds: float = 600.0,
    on_failure: FailureHook | None = None,
    every: Period | None = None,
) -> Callable[[TaskFunction], Task]:
    """Register an `async def` as a task under its function name (or `name`); with
    `every`, it also runs once per that many seconds, however many processes run."""

    def register(function: TaskFunction) -> Task:
        registered = Task(
            name=name or function.__name__,
            function=function,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
            on_failure=on_failure,
            every=every,
        )
        if registered.name in TASKS:
            raise ValueError(f"a task named {registered.name!r} is already registered")
        TASKS[registered.name] = registered
        return registered

    return register


@dataclass(frozen=True)
class Schedule:
    """Enqueue `task` once every `every_seconds`, however many processes poll."""

    task: Task
    every_seconds: float
    arguments: dict[str, Any] = field(default_factory=dict)


def schedules(settings: Settings) -> list[Schedule]:
    """The periodic jobs of the registered tasks, for the poller of every executor."""
    periods = ((task, task.every(settings)) for task in TASKS.values() if task.every)
    return [Schedule(task, every_seconds=seconds) for task, seconds in periods if seconds > 0]
