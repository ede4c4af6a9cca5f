"""The command line as an operator runs it, in a process of its own, on the test's
database and the running service's jobs: `python -m {{ cookiecutter.project_slug }} ...`."""

import asyncio
import os
import subprocess
import uuid
from datetime import timedelta
{%- if cookiecutter.database == "sqlite" %}
from pathlib import Path
{%- endif %}

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Job, JobStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.processes import run_module
from tests.test_jobs import FINISHED, submit, wait_for


async def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Wide, so that no id is folded across lines.
    env = os.environ | {"DATABASE_URL": settings.database_url, "COLUMNS": "250"} | env
    # In a thread: the service in this process keeps its event loop, so no write of its
    # own waits for the command to end while the command waits for it.
    return await asyncio.to_thread(run_module, "{{ cookiecutter.project_slug }}", args, env)


async def test_jobs_are_listed_and_shown_and_an_unknown_one_exits_1(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    job = await submit(control, sessionmaker, tasks.add.new_job(a=20, b=22))
    await wait_for(control, job.id, *FINISHED)
    listed = await cli(settings, "jobs", "list", "--status", "succeeded")
    assert listed.returncode == 0, listed.stderr
    assert str(job.id) in listed.stdout
    assert "add" in listed.stdout
    shown = await cli(settings, "jobs", "show", str(job.id))
    assert shown.returncode == 0, shown.stderr
    assert all(text in shown.stdout for text in ("succeeded", '{"a": 20, "b": 22}', "42"))
    unknown = await cli(settings, "jobs", "show", str(uuid.uuid4()))
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert "no job with id" in unknown.stderr
    assert (await cli(settings, "jobs", "show", "not-an-id")).returncode == 2


async def test_a_job_is_cancelled_and_retried_and_a_finished_one_refused(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    job = tasks.add.new_job(a=1, b=2, delay=timedelta(hours=1))
    later = await submit(control, sessionmaker, job)
    assert (await cli(settings, "jobs", "cancel", str(later.id))).returncode == 0
    assert (await control.get(later.id)).status == JobStatus.CANCELLED
    again = await cli(settings, "jobs", "cancel", str(later.id))
    assert again.returncode == 0, "cancelled already"
    assert (await cli(settings, "jobs", "retry", str(later.id))).returncode == 0
    # Queued again and due now: the service's poller runs it.
    assert (await wait_for(control, later.id, *FINISHED)).result == 3
    refused = await cli(settings, "jobs", "cancel", str(later.id))
    assert refused.returncode == 1
    assert "is succeeded; only queued or running jobs can be cancelled" in refused.stderr
    assert (await cli(settings, "jobs", "retry", str(later.id))).returncode == 1


async def test_failed_jobs_of_a_task_are_retried_at_once(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    failing = await submit(control, sessionmaker, tasks.always_fail.new_job(message="down"))
    assert (await wait_for(control, failing.id, *FINISHED)).status == JobStatus.FAILED
    shown = (await cli(settings, "jobs", "show", str(failing.id))).stdout
    assert shown.endswith("    raise RuntimeError(message)\nRuntimeError: down\n"), shown
    retried = await cli(settings, "jobs", "retry-failed", "--task", "always_fail")
    assert (retried.returncode, retried.stdout.strip()) == (0, "1 failed jobs queued again")
    assert (await cli(settings, "jobs", "retry-failed", "--task", "add")).stdout.startswith("0 ")
    again = await wait_for(control, failing.id, *FINISHED)
    assert (again.status, again.attempts) == (JobStatus.FAILED, 3)
    assert len(tasks.noted()) == 6, "three attempts, twice"


async def test_purge_deletes_only_jobs_finished_long_enough_ago(
    sessionmaker: SessionMaker, settings: Settings
) -> None:
    old, recent = (tasks.add.new_job(a=1, b=1) for _ in range(2))
    old.status = recent.status = JobStatus.SUCCEEDED
    old.finished_at, recent.finished_at = utcnow() - timedelta(days=10), utcnow()
    async with sessionmaker() as session:
        session.add_all([old, recent])
        await session.commit()
    purged = await cli(settings, "jobs", "purge", "--older-than-days", "5")
    assert (purged.returncode, purged.stdout.strip()) == (0, "1 finished jobs deleted")
    async with sessionmaker() as session:
        assert await session.get(Job, old.id) is None
        assert await session.get(Job, recent.id) is not None


async def test_schedules_and_live_executors_are_listed(
    control: JobControl, settings: Settings
) -> None:
    schedules = await cli(settings, "schedules", "list", CLEANUP_SCHEDULE="30 4 * * *")
    assert schedules.returncode == 0, schedules.stderr
    assert all(text in schedules.stdout for text in ("cleanup", "30 4 * * *", "04:30:00"))
    executors = await cli(settings, "executors", "list")
    assert executors.returncode == 0, executors.stderr
    assert control.backend.name in executors.stdout


{%- if cookiecutter.database == "sqlite" %}


async def test_a_database_file_that_is_not_there_exits_3_with_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    missing = tmp_path / "elsewhere.db"
    answer = await cli(settings, "jobs", "list", DATABASE_URL=f"sqlite+aiosqlite:///{missing}")
    assert answer.returncode == 3
    assert answer.stderr == f"no database file at {missing}: check DATABASE_URL\n"
    assert not missing.exists(), "no empty database left behind"
{%- else %}


async def test_a_lost_database_exits_3_with_one_line(settings: Settings) -> None:
    gone = "postgresql+asyncpg://postgres@127.0.0.1:9/gone"  # the discard port: nothing listens
    answer = await cli(settings, "jobs", "list", DATABASE_URL=gone)
    assert answer.returncode == 3
    assert answer.stderr.startswith("the database is unavailable: ")
    assert answer.stderr.count("\n") == 1, answer.stderr
{%- endif %}
