"""The operator's command line: `python -m {{ cookiecutter.project_slug }} --help`.

Each command reads the settings as the service does (environment, then `.env`), works on
the database through the same job-store functions as the API, and exits with 0 when done,
1 when the job is unknown or cannot make that move, 2 on a usage error, and 3 when the
database is unavailable. A job queued again here is started by a running {% if cookiecutter.job_backend in ("rq", "celery") %}worker{% else %}service{% endif %}'s poller
within JOB_POLL_SECONDS; a running job cancelled here stops when its executor notices.
"""

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
{%- if cookiecutter.database == "sqlite" %}
from pathlib import Path
{%- endif %}
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
{%- if cookiecutter.database == "sqlite" %}
from sqlalchemy import make_url
{%- endif %}
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import (
    tasks,  # noqa: F401  # registers every task, and so every schedule
)
from {{ cookiecutter.project_slug }}.db import (
    create_sessionmaker,
    database_engine,
    database_unavailable,
)
from {{ cookiecutter.project_slug }}.jobs import moves, reads
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Operate the jobs.")
jobs_app = typer.Typer(no_args_is_help=True, help="List, show, cancel, retry and purge jobs.")
schedules_app = typer.Typer(no_args_is_help=True, help="The schedules in the code.")
executors_app = typer.Typer(no_args_is_help=True, help="The processes that run jobs.")
app.add_typer(jobs_app, name="jobs")
app.add_typer(schedules_app, name="schedules")
app.add_typer(executors_app, name="executors")

# Messages stay on one line, however narrow the terminal: scripts grep them.
out, err = Console(), Console(stderr=True, soft_wrap=True)
NOT_DONE, UNAVAILABLE = 1, 3


def run(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `work` in a database session of its own, on the settings' database."""
    settings = get_settings()
{%- if cookiecutter.database == "sqlite" %}
    database = make_url(settings.database_url).database
    if database and database != ":memory:" and not Path(database).exists():
        # SQLite would make a new, empty file: an operator has the path wrong.
        err.print(f"no database file at {database}: check DATABASE_URL")
        raise typer.Exit(UNAVAILABLE)
{%- endif %}

    async def main() -> T:
        engine = database_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except Exception as error:
        if not database_unavailable(error):
            raise
        # The driver's own words, without SQLAlchemy's lines about where to read more.
        err.print(f"the database is unavailable: {getattr(error, 'orig', None) or error}")
        raise typer.Exit(UNAVAILABLE) from None


def refuse(message: str) -> typer.Exit:
    err.print(message)
    return typer.Exit(NOT_DONE)


def when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    shown = Table(title=f"{title}, times in UTC", title_justify="left")
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*("" if cell is None else str(cell) for cell in row))
    out.print(shown)


@jobs_app.command("list")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs of this status.")] = None,
    task: Annotated[str | None, typer.Option(help="Only jobs of this task.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Jobs, newest first."""

    async def page(session: AsyncSession, settings: Settings) -> Sequence[Job]:
        return await reads.page(session, status=status, name=task, limit=limit, offset=offset)

    rows = (
        (
            job.id,
            job.name,
            job.status,
            f"{job.attempts}/{job.max_attempts}",
            when(job.created_at),
            when(job.finished_at),
        )
        for job in run(page)
    )
    table("jobs", ("id", "task", "status", "attempts", "created", "finished"), rows)


def _get(job_id: uuid.UUID) -> Job:
    async def get(session: AsyncSession, settings: Settings) -> Job | None:
        return await reads.get(session, job_id)

    job = run(get)
    if job is None:
        raise refuse(f"no job with id {job_id}")
    return job


@jobs_app.command("show")
def show_job(job_id: uuid.UUID) -> None:
    """One job: arguments, result, error, attempts, progress and times; then the
    traceback of its last error, if any."""
    job = _get(job_id)
    fields: dict[str, Any] = {
        "id": job.id,
        "task": job.name,
        "status": job.status,
        "attempts": f"{job.attempts} of {job.max_attempts}, and {job.lost_attempts} lost",
        "progress": f"{job.progress:.0%} {job.progress_message or ''}".rstrip(),
        "arguments": json.dumps(job.arguments),
        "result": json.dumps(job.result),
        "error": f"{job.error_type}: {job.error_message}" if job.error_type else None,
        "idempotency key": job.idempotency_key,
        "created": when(job.created_at),
        "due": when(job.run_after),
        "started": when(job.started_at),
        "finished": when(job.finished_at),
        "executor": job.executor_id,
    }
    table(f"job {job.id}", ("field", "value"), fields.items())
    if job.error_traceback:
        out.print(job.error_traceback, end="", markup=False, highlight=False)


@jobs_app.command("cancel")
def cancel_job(job_id: uuid.UUID) -> None:
    """Cancel a queued or running job."""

    async def cancel(session: AsyncSession, settings: Settings) -> bool:
        return await moves.cancel(session, job_id)

    if not run(cancel) and (job := _get(job_id)).status != JobStatus.CANCELLED:
        raise refuse(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    out.print(f"job {job_id} is cancelled")


@jobs_app.command("retry")
def retry_job(job_id: uuid.UUID) -> None:
    """Run a failed or cancelled job again, under the same id."""

    async def retry(session: AsyncSession, settings: Settings) -> bool:
        return await moves.retry(session, job_id)

    if not run(retry):
        job = _get(job_id)
        raise refuse(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
    out.print(f"job {job_id} is queued again")


@jobs_app.command("retry-failed")
def retry_failed(
    task: Annotated[str | None, typer.Option(help="Only jobs of this task.")] = None,
) -> None:
    """Run every failed job again."""

    async def retry(session: AsyncSession, settings: Settings) -> int:
        return await moves.retry_failed(session, task)

    out.print(f"{run(retry)} failed jobs queued again")


@jobs_app.command("purge")
def purge(
    older_than_days: Annotated[
        float | None, typer.Option(min=0, help="Default: JOB_RETENTION_DAYS.")
    ] = None,
) -> None:
    """Delete the jobs that finished more than so many days ago."""

    async def purge(session: AsyncSession, settings: Settings) -> int:
        days = settings.job_retention_days if older_than_days is None else older_than_days
        now = await reads.database_time(session)
        return await moves.purge_finished(session, now - timedelta(days=days))

    out.print(f"{run(purge)} finished jobs deleted")


@schedules_app.command("list")
def list_schedules() -> None:
    """Each schedule with its last fire time, that fire's job, and its next fire time."""

    async def states(session: AsyncSession, settings: Settings) -> list[reads.ScheduleState]:
        return await reads.schedule_states(session, schedules(settings))

    rows = []
    for state in run(states):
        schedule, job = state.schedule, state.last_job
        fired = job and f"{job.id} {job.status}"
        cron = schedule.cron
        last, following = when(state.last_fire_at), when(state.next_fire_at)
        rows.append((schedule.task.name, cron.expression, cron.timezone, last, fired, following))
    table("schedules", ("task", "cron", "time zone", "last fire", "its job", "next fire"), rows)


@executors_app.command("list")
def list_executors() -> None:
    """The processes heard from within JOB_LEASE_SECONDS, oldest first; then the queued
    jobs of tasks none of them knows, which wait for one that does."""

    async def alive(
        session: AsyncSession, settings: Settings
    ) -> tuple[Sequence[Executor], dict[str, int]]:
        lease = settings.job_lease_seconds
        return await reads.live_executors(session, lease), await reads.waiting_for_task(
            session, lease
        )

    executors, waiting = run(alive)
    rows = (
        (
            executor.id,
            executor.host,
            executor.pid,
            executor.backend,
            when(executor.started_at),
            when(executor.heartbeat_at),
        )
        for executor in executors
    )
    table("executors", ("id", "host", "pid", "backend", "started", "last heartbeat"), rows)
    if waiting:
        table("jobs waiting for their task", ("task", "queued"), waiting.items())
