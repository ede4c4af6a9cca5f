"""Every way a job ends leaves its rows right.

Outcomes the database cannot store end their job once, with a clear error, and leave
its neighbours alone: a result strict JSON has no word for (NaN), a result the database
refuses (a trigger here, as a constraint of the user's would), an error whose text holds
a NUL{% if cookiecutter.database == "postgresql" %} (which PostgreSQL's text refuses){% endif %}.

The row a task works on follows its job however the job ends: cancelled, given up after
its process died, retried.

An attempt ends within its timeout plus a grace even if its task does not stop, and no
retry runs beside an attempt that may still be running.

A task that changes a row, then awaits slow I/O before its commit, holds no write
transaction open meanwhile: other jobs and requests write as usual.

In a rolling deploy, a job of a task only the new code has waits for a process of the
new code; one of a task no process knows fails after JOB_UNKNOWN_TASK_SECONDS.
"""

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlmodel import col, select

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.jobs.recovery import MAX_LOST_ATTEMPTS
from {{ cookiecutter.project_slug }}.jobs.runner import CANCEL_GRACE_SECONDS
from {{ cookiecutter.project_slug }}.models import (
    Document,
    Email,
    Executor,
    Job,
    JobStatus,
    utcnow,
)
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.storage import Storage
from {{ cookiecutter.project_slug }}.tasks.documents import process_document
from {{ cookiecutter.project_slug }}.tasks.emails import send_email
from tests import tasks
from tests.processes import {% if cookiecutter.job_backend in ("rq", "celery") %}Process, start_worker{% else %}start_web{% endif %}
from tests.test_cli import cli
from tests.test_jobs import FINISHED, submit, wait_for, wait_for_note

NEIGHBOURS = 8
{%- if cookiecutter.database == "sqlite" %}
REFUSE_MARKED_RESULTS = [
    """CREATE TRIGGER refuse_marked_results BEFORE UPDATE OF result ON job
    WHEN NEW.result LIKE '%refuse-me%'
    BEGIN SELECT RAISE(ABORT, 'refused by a check'); END""",
]
{%- else %}
REFUSE_MARKED_RESULTS = [
    """CREATE FUNCTION refuse_marked_results() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.result::text LIKE '%refuse-me%' THEN
            RAISE EXCEPTION 'refused by a check';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER refuse_marked_results BEFORE UPDATE ON job
    FOR EACH ROW EXECUTE FUNCTION refuse_marked_results()""",
]
{%- endif %}


async def run_beside_neighbours(
    control: JobControl, sessionmaker: SessionMaker, odd: Job
) -> tuple[Job, list[Job]]:
    """The odd job and eight others submitted at once, so that their results are
    written together; each, once finished."""
    jobs = [odd, *(tasks.add.new_job(a=n, b=1) for n in range(NEIGHBOURS))]
    submitted = await asyncio.gather(*(submit(control, sessionmaker, job) for job in jobs))
    finished = [await wait_for(control, job.id, *FINISHED) for job in submitted]
    return finished[0], finished[1:]


def assert_neighbours_succeeded(neighbours: list[Job]) -> None:
    outcomes = [(job.status, job.attempts, job.result) for job in neighbours]
    assert outcomes == [(JobStatus.SUCCEEDED, 1, n + 1) for n in range(NEIGHBOURS)]


def runs_of(job: Job) -> list[str]:
    return [line for line in tasks.noted() if line.startswith(f"returned {job.id} ")]


async def test_a_result_strict_json_cannot_hold_fails_its_job_once(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    nan, neighbours = await run_beside_neighbours(
        control, sessionmaker, tasks.returns.new_job(what="nan")
    )
    assert (nan.status, nan.attempts, nan.error_type) == (JobStatus.FAILED, 1, "UnstorableResult")
    assert nan.error_message is not None
    assert "not JSON the job table can keep" in nan.error_message
    assert runs_of(nan) == [f"returned {nan.id} 1"]
    assert_neighbours_succeeded(neighbours)


async def test_a_result_the_database_refuses_fails_only_its_job_once(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        for statement in REFUSE_MARKED_RESULTS:
            await session.exec(text(statement))  # type: ignore[call-overload]  # DDL
        await session.commit()
    refused, neighbours = await run_beside_neighbours(
        control, sessionmaker, tasks.returns.new_job(what="refuse-me")
    )
    assert (refused.status, refused.attempts) == (JobStatus.FAILED, 1)
    assert refused.error_type == "ResultRefused"
    assert refused.error_message is not None
    assert "refused by a check" in refused.error_message
    assert runs_of(refused) == [f"returned {refused.id} 1"]
    assert_neighbours_succeeded(neighbours)


async def test_an_error_whose_text_holds_a_nul_is_recorded(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    job = await submit(control, sessionmaker, tasks.fail_with_nul.new_job())
    failed = await wait_for(control, job.id, JobStatus.FAILED)
    assert failed.attempts == 2
    assert failed.error_message == "a NUL \\x00 in the message"


async def test_a_cancelled_email_says_so_and_a_retry_sends_it(
    control: JobControl, client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    # Due in an hour: it is surely still queued when cancelled.
    email = Email(to="ada@example.com", subject="Hello", body="Hi")
    job = send_email.new_job(email_id=str(email.id), delay=timedelta(hours=1))
    email.job_id = job.id
    async with sessionmaker() as session:
        session.add(email)
        await control.submit(session, job)

    cancelled = await client.post(f"/api/v1/jobs/{job.id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    shown = (await client.get(f"/api/v1/emails/{email.id}")).json()
    assert shown["status"] == "cancelled"

    retried = await client.post(f"/api/v1/jobs/{job.id}/retry")
    assert retried.status_code == 200, retried.text
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
    shown = (await client.get(f"/api/v1/emails/{email.id}")).json()
    assert (shown["status"], shown["error"]) == ("sent", None)


async def test_a_document_whose_process_keeps_dying_ends_in_error_and_a_retry_processes_it(
    control: JobControl, client: httpx.AsyncClient, sessionmaker: SessionMaker, settings: Settings
) -> None:
    stored_name = uuid.uuid4().hex
    path = Storage(settings.storage_dir).path("documents", stored_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"three short words")
    document = Document(stored_name=stored_name, content_type="text/plain")
    # Rows as a killed process leaves them in the last attempt recovery allows it:
    # running, on an executor whose heartbeat stopped.
    killed = Executor(host="killed-host", pid=1, backend="{{ cookiecutter.job_backend }}")
    killed.heartbeat_at = utcnow() - timedelta(minutes=1)
    job = process_document.new_job(document_id=str(document.id))
    job.status, job.attempts, job.lost_attempts = JobStatus.RUNNING, 3, MAX_LOST_ATTEMPTS - 1
    job.executor_id, document.job_id = killed.id, job.id
    async with sessionmaker() as session:
        session.add_all([killed, job, document])
        await session.commit()

    failed = await wait_for(control, job.id, *FINISHED)
    assert (failed.status, failed.error_type) == (JobStatus.FAILED, "ExecutorLost")
    shown = (await client.get(f"/api/v1/documents/{document.id}")).json()
    assert shown["status"] == "error"
    assert shown["error"].startswith("ExecutorLost: the process running the job stopped")
    assert shown["processed_at"] is not None

    retried = await client.post(f"/api/v1/jobs/{job.id}/retry")
    assert retried.status_code == 200, retried.text
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
    shown = (await client.get(f"/api/v1/documents/{document.id}")).json()
    assert (shown["status"], shown["error"], shown["word_count"]) == ("ready", None, 3)


async def retry_and_check_it_waits(
    control: JobControl, job_id: uuid.UUID, executor_id: uuid.UUID | None, key: str
) -> None:
    """Retry the job while its last attempt may still run (until the test releases it):
    the job is seen queued and held by that attempt's executor, and runs again only once
    the attempt has ended."""
    assert executor_id is not None
    await control.retry(job_id)
    job = await wait_for(control, job_id, JobStatus.QUEUED, JobStatus.RUNNING)
    assert (job.status, job.executor_id) == (JobStatus.QUEUED, executor_id)

    tasks.note(f"release {key}")
    assert (await wait_for(control, job_id, *FINISHED)).status == JobStatus.SUCCEEDED
    runs = [line for line in tasks.noted() if line.endswith(key) and "release" not in line]
    assert runs == [f"started {key}", f"ended {key}"] * 2


async def test_a_job_cancelled_then_retried_at_once_runs_after_its_thread_ends(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    key = uuid.uuid4().hex
    job = await submit(control, sessionmaker, tasks.threaded.new_job(key=key))
    await wait_for_note(f"started {key}")
    running = await control.get(job.id)
    await control.cancel(job.id)
    await retry_and_check_it_waits(control, job.id, running.executor_id, key)


async def test_an_attempt_that_swallows_its_timeout_is_given_up_and_not_run_beside(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    key = uuid.uuid4().hex
    job = await submit(control, sessionmaker, tasks.stubborn.new_job(key=key))
    failed = await wait_for(control, job.id, *FINISHED, within=CANCEL_GRACE_SECONDS + 15)
    assert (failed.status, failed.attempts, failed.error_type) == (
        JobStatus.FAILED,
        1,
        "AttemptStuck",
    )
    assert f"ended {key}" not in tasks.noted(), "its task runs on until released"
    await retry_and_check_it_waits(control, job.id, failed.executor_id, key)


async def test_a_job_of_a_task_only_the_next_release_has_waits_for_a_process_of_it(
    control: JobControl,
    client: httpx.AsyncClient,
    sessionmaker: SessionMaker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The running processes are the old release: they leave the job queued, and say it
    waits for an executor that knows its task, until a process of the new one runs it."""
    job = await submit(control, sessionmaker, Job(name="from_the_next_release"))
    health = (await client.get("/health/jobs")).json()
    assert health["waiting_for_task"] == {"from_the_next_release": 1}
    overview = (await client.get("/dashboard")).text
    assert "waiting for an executor that knows this task" in overview
    listed = await cli(settings, "executors", "list")
    assert listed.returncode == 0, listed.stderr
    assert "jobs waiting for their task" in listed.stdout
    assert "from_the_next_release" in listed.stdout

{%- if cookiecutter.job_backend in ("rq", "celery") %}
    # A second worker on this host: metrics served by the first only.
    next_release = start_worker(
        settings, tmp_path / "next-release.log", env={"TEST_NEXT_RELEASE": "1", "METRICS_PORT": "0"}
    )
{%- else %}
    next_release = start_web(
        settings, tmp_path / "next-release.log", env={"TEST_NEXT_RELEASE": "1"}
    )
{%- endif %}
    with next_release:
        ran = await wait_for(control, job.id, *FINISHED)
    assert (ran.status, ran.result, ran.attempts) == (JobStatus.SUCCEEDED, "new code", 1)
    assert (await client.get("/health/jobs")).json()["waiting_for_task"] == {}


async def test_a_job_of_a_task_no_process_knows_fails_after_the_bound(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    """Due for longer than JOB_UNKNOWN_TASK_SECONDS (an hour), with a live executor."""
    job = Job(name="removed_long_ago", run_after=utcnow() - timedelta(hours=2))
    job = await submit(control, sessionmaker, job)
    failed = await wait_for(control, job.id, *FINISHED)
    assert (failed.status, failed.attempts, failed.error_type) == (
        JobStatus.FAILED,
        0,
        "UnknownTask",
    )
    assert failed.error_message is not None
    assert failed.error_message.startswith("no running executor knew the task within 3600 s")


async def test_a_task_awaiting_io_before_its_commit_keeps_no_one_waiting(
    control: JobControl,
    client: httpx.AsyncClient,
    sessionmaker: SessionMaker,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    second_worker: Process,
{%- endif %}
) -> None:
    key = uuid.uuid4().hex
    slow = await submit(control, sessionmaker, tasks.write_then_wait.new_job(key=key))
    await wait_for_note(f"waiting {key}")
    # While it awaits (until released below), other jobs run and requests write.
    others = [await submit(control, sessionmaker, tasks.add.new_job(a=n, b=1)) for n in range(5)]
    for n, job in enumerate(others):
        done = await wait_for(control, job.id, *FINISHED)
        assert (done.status, done.result) == (JobStatus.SUCCEEDED, n + 1)
    email = {"to": "ada@example.com", "subject": "Hello", "body": "Hi"}
    accepted = await client.post("/api/v1/emails", json=email)
    assert accepted.status_code == 202, accepted.text

    tasks.note(f"release {key}")
    assert (await wait_for(control, slow.id, *FINISHED)).status == JobStatus.SUCCEEDED
    async with sessionmaker() as session:
        written = await session.exec(select(Email).where(col(Email.subject) == key))
        assert len(written.all()) == 1, "its change is written at its commit"
