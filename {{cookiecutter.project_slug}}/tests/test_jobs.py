"""The job contract, the same on every backend: results, retries with backoff, timeouts,
idempotency, cancellation, retry, recovery after a crash, delayed jobs, and submitting
many jobs at once."""

import asyncio
import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
from sqlalchemy import Connection, event
{%- endif %}
from sqlmodel import col, func, select

from {{ cookiecutter.project_slug }}.db import SessionMaker, create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.jobs import executor_writes as writes
from {{ cookiecutter.project_slug }}.jobs import moves, reads
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.jobs.recovery import MAX_LOST_ATTEMPTS
from {{ cookiecutter.project_slug }}.jobs.registry import TASKS
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# Long enough that a job started before it is due would be seen queued no longer.
DELAY = timedelta(seconds=1.5)
# The tasks an executor of these tests claims.
KNOWN = sorted(TASKS)


async def submit(control: JobControl, sessionmaker: SessionMaker, job: Job) -> Job:
    async with sessionmaker() as session:
        return await control.submit(session, job)


async def wait_for(
    control: JobControl, job_id: uuid.UUID, *statuses: JobStatus, within: float = 15
) -> Job:
    deadline = time.monotonic() + within
    while (job := await control.get(job_id)).status not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"job {job.name} is {job.status} after {within} s, not {statuses}; "
                f"error: {job.error_type}: {job.error_message}"
            )
        await asyncio.sleep(0.02)
    return job


async def wait_for_note(line: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while line not in tasks.noted():
        assert time.monotonic() < deadline, f"no {line!r} noted within {within} s"
        await asyncio.sleep(0.02)


async def test_a_job_succeeds_with_its_result(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    job = await submit(control, sessionmaker, tasks.add.new_job(a=2, b=3))
    done = await wait_for(control, job.id, *FINISHED)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.result, done.attempts, done.progress) == (5, 1, 1.0)
    assert done.started_at is not None
    assert done.finished_at is not None
    # The row keeps the executor that ran it.
    assert done.executor_id is not None


async def test_a_delayed_job_stays_queued_until_its_time_in_the_database_clock(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        before = await reads.database_time(session)
    delayed = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=1, delay=DELAY))
    async with sessionmaker() as session:
        after = await reads.database_time(session)
    at = await submit(control, sessionmaker, tasks.add.new_job(a=2, b=2, run_at=utcnow() + DELAY))
    # The delay is added to the database's time of the INSERT.
    assert before + DELAY <= delayed.run_after <= after + DELAY
    for job in (delayed, at):
        done = await wait_for(control, job.id, *FINISHED)
        assert done.status == JobStatus.SUCCEEDED
        assert done.started_at is not None
        # Started in the database's clock no earlier than due: queued until then.
        assert done.started_at >= job.run_after


def test_a_job_is_given_run_at_or_delay_and_an_aware_run_at() -> None:
    with pytest.raises(TypeError, match="not both"):
        tasks.add.new_job(a=1, b=1, run_at=utcnow(), delay=DELAY)
    with pytest.raises(ValueError, match="naive"):
        tasks.add.new_job(a=1, b=1, run_at=datetime.now())


async def test_a_failing_job_is_retried_with_backoff_then_failed(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    job = await submit(control, sessionmaker, tasks.always_fail.new_job(message="disk full"))
    failed = await wait_for(control, job.id, *FINISHED)
    assert failed.status == JobStatus.FAILED
    assert failed.attempts == failed.max_attempts == 3
    assert (failed.error_type, failed.error_message) == ("RuntimeError", "disk full")
    # The traceback ends in the task's own frame and its error.
    assert failed.error_traceback is not None
    assert "raise RuntimeError(message)\nRuntimeError: disk full\n" in failed.error_traceback
    assert tasks.noted() == [f"failing {job.id} {attempt}" for attempt in (1, 2, 3)]
    # Backoff 0.2 s doubling, with jitter down to half: at least 0.1 + 0.2 s of waiting.
    assert failed.finished_at is not None
    assert failed.finished_at - failed.created_at >= timedelta(seconds=0.3)


async def test_a_job_over_its_timeout_is_stopped_and_failed(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    job = await submit(control, sessionmaker, tasks.overrun.new_job(seconds=60))
    failed = await wait_for(control, job.id, *FINISHED, within=10)
    assert failed.status == JobStatus.FAILED
    assert (failed.error_type, failed.error_message) == ("AttemptTimedOut", "timed out after 0.5 s")


async def test_fifty_concurrent_submits_with_one_key_make_one_job(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    key = f"order-{uuid.uuid4()}"
    submitted = await asyncio.gather(
        *(
            submit(control, sessionmaker, tasks.add.new_job(idempotency_key=key, a=1, b=1))
            for _ in range(50)
        )
    )
    assert len({job.id for job in submitted}) == 1
    async with sessionmaker() as session:
        count = select(func.count()).select_from(Job).where(Job.idempotency_key == key)
        assert (await session.exec(count)).one() == 1
    assert (await wait_for(control, submitted[0].id, *FINISHED)).status == JobStatus.SUCCEEDED


async def test_a_cancelled_queued_job_never_starts(
    control: JobControl, sessionmaker: SessionMaker, client: httpx.AsyncClient
) -> None:
    job = tasks.add.new_job(a=1, b=1)
    job.run_after = utcnow() + timedelta(seconds=0.3)
    job = await submit(control, sessionmaker, job)
    response = await client.post(f"/api/v1/jobs/{job.id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    # A job due just after it has run: the cancelled one's time has come and gone.
    witness = tasks.add.new_job(a=2, b=2, run_at=job.run_after + timedelta(seconds=0.1))
    witness = await submit(control, sessionmaker, witness)
    assert (await wait_for(control, witness.id, *FINISHED)).status == JobStatus.SUCCEEDED
    cancelled = await control.get(job.id)
    assert (cancelled.status, cancelled.attempts, cancelled.started_at) == (
        JobStatus.CANCELLED,
        0,
        None,
    )


async def test_a_cancelled_running_job_stops(
    control: JobControl, sessionmaker: SessionMaker, client: httpx.AsyncClient
) -> None:
    job = await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))
    await wait_for_note(f"napping {job.id}")
    shown = (await client.get(f"/api/v1/jobs/{job.id}")).json()
    assert (shown["status"], shown["progress"], shown["progress_message"]) == (
        "running",
        0.5,
        "napping",
    )
    response = await client.post(f"/api/v1/jobs/{job.id}/cancel")
    assert response.status_code == 200, response.text
    await wait_for_note(f"stopped {job.id}")
    stopped = await control.get(job.id)
    assert stopped.status == JobStatus.CANCELLED
    assert stopped.finished_at is not None


async def test_retry_runs_a_failed_job_again_under_the_same_id(
    control: JobControl, sessionmaker: SessionMaker, client: httpx.AsyncClient
) -> None:
    job = await submit(control, sessionmaker, tasks.fail_first_run.new_job(key="retry-test"))
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.FAILED
    response = await client.post(f"/api/v1/jobs/{job.id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(job.id)
    assert response.json()["error"] is None
    succeeded = await wait_for(control, job.id, *FINISHED)
    assert (succeeded.status, succeeded.result, succeeded.attempts) == (
        JobStatus.SUCCEEDED,
        "second run",
        1,
    )


async def test_a_job_whose_process_died_runs_again_and_one_that_keeps_dying_fails(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    """An attempt cut short by its process dying is counted apart: a job only beside the
    one that killed the process (here with its one attempt) runs again and succeeds; a
    job whose process died during MAX_LOST_ATTEMPTS of its attempts fails."""
    # Rows as a killed process leaves them: running, on an executor whose heartbeat stopped.
    killed = Executor(host="killed-host", pid=1, backend="{{ cookiecutter.job_backend }}")
    killed.heartbeat_at = utcnow() - timedelta(minutes=1)
    beside = tasks.add.new_job(a=20, b=22)
    killer = tasks.add.new_job(a=0, b=0)
    for job, lost in ((beside, 0), (killer, MAX_LOST_ATTEMPTS - 1)):
        job.status, job.attempts, job.max_attempts = JobStatus.RUNNING, 1, 1
        job.lost_attempts, job.executor_id = lost, killed.id
    async with sessionmaker() as session:
        session.add_all([killed, beside, killer])
        await session.commit()
    succeeded = await wait_for(control, beside.id, *FINISHED)
    outcome = (succeeded.status, succeeded.result, succeeded.attempts, succeeded.lost_attempts)
    assert outcome == (JobStatus.SUCCEEDED, 42, 2, 1)
    failed = await wait_for(control, killer.id, *FINISHED)
    assert (failed.status, failed.error_type) == (JobStatus.FAILED, "ExecutorLost")
    assert failed.lost_attempts == MAX_LOST_ATTEMPTS
    async with sessionmaker() as session:
        assert await session.get(Executor, killed.id) is None, "a dead executor is forgotten"


async def test_an_executor_late_with_its_heartbeat_claims_nothing(settings: Settings) -> None:
    # Its own engine: no runner or poller of this test's app takes the job first.
    engine = create_engine(settings.database_url)
    late = Executor(host="paused-host", pid=1, backend="{{ cookiecutter.job_backend }}")
    late.heartbeat_at = utcnow() - timedelta(seconds=20)
    job = tasks.add.new_job(a=1, b=1)
    try:
        async with create_sessionmaker(engine)() as session:
            session.add_all([late, job])
            await session.commit()
            # Twenty seconds late, though within a lease of 30: any poller may soon
            # queue its jobs again, so it starts none.
            assert await writes.claim(session, [job.id], late.id, 15, KNOWN) == []
            assert await writes.claim(session, [job.id], uuid.uuid4(), 15, KNOWN) == [], "no row"
            assert await writes.heartbeat(session, late.id, ()) == set()
            claimed = await writes.claim(session, [job.id], late.id, 15, KNOWN)
            assert [(j.id, j.status, j.executor_id) for j in claimed] == [
                (job.id, JobStatus.RUNNING, late.id)
            ]
    finally:
        await engine.dispose()


async def test_a_result_is_recorded_only_where_the_executor_still_holds_the_job(
    settings: Settings,
) -> None:
    """Alone or several in one write: a job cancelled, or run by another executor since,
    keeps the state it has, and the others are recorded."""
    # Its own engine: no runner or poller of this test's app takes the jobs first.
    engine = create_engine(settings.database_url)
    here = Executor(host="here", pid=1, backend="{{ cookiecutter.job_backend }}")
    there = Executor(host="there", pid=2, backend="{{ cookiecutter.job_backend }}")
    jobs = [tasks.add.new_job(a=n, b=n) for n in range(5)]
    try:
        async with create_sessionmaker(engine)() as session:
            session.add_all([here, there, *jobs])
            await session.commit()
            ids = [job.id for job in jobs]
            assert len(await writes.claim(session, ids, here.id, 15, KNOWN)) == 5
            assert await moves.cancel(session, ids[0])
            # Given back (as when this executor was taken for dead), then claimed there.
            assert await writes.release(session, here.id, [ids[3]]) == 1
            assert len(await writes.claim(session, [ids[3]], there.id, 15, KNOWN)) == 1
            # The executor's own earlier outcome stands too: a second one changes nothing.
            alone = [writes.Success(ids[4], 8)]
            assert await writes.record_successes(session, here.id, alone) == [True]
            assert await writes.record_successes(session, here.id, alone) == [False]
            cancelled = [writes.Success(ids[0], 0)]
            assert await writes.record_successes(session, here.id, cancelled) == [False]
            several = [writes.Success(job_id, n * 2) for n, job_id in enumerate(ids[:4])]
            assert await writes.record_successes(session, here.id, several) == [
                False,
                True,
                True,
                False,
            ]
            rows = select(Job.id, Job.status, Job.result).where(col(Job.id).in_(ids))
            by_id = {row[0]: (row[1], row[2]) for row in await session.exec(rows)}
        assert [by_id[job_id] for job_id in ids] == [
            (JobStatus.CANCELLED, None),
            (JobStatus.SUCCEEDED, 2),
            (JobStatus.SUCCEEDED, 4),
            (JobStatus.RUNNING, None),
            (JobStatus.SUCCEEDED, 8),
        ]
    finally:
        await engine.dispose()


async def test_submit_many_commits_the_jobs_with_the_session_and_runs_them(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        submitted = await control.submit_many(
            session, [tasks.add.new_job(a=n, b=1) for n in range(30)]
        )
    done = [await wait_for(control, job.id, *FINISHED) for job in submitted]
    assert [(job.status, job.result) for job in done] == [
        (JobStatus.SUCCEEDED, n + 1) for n in range(30)
    ]


async def test_submit_many_refuses_idempotency_keys_and_writes_nothing(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    keyed = tasks.add.new_job(idempotency_key=f"order-{uuid.uuid4()}", a=1, b=1)
    async with sessionmaker() as session:
        with pytest.raises(ValueError, match="without idempotency keys"):
            await control.submit_many(session, [tasks.add.new_job(a=1, b=1), keyed])
        count = select(func.count()).select_from(Job).where(Job.name == tasks.add.name)
        assert (await session.exec(count)).one() == 0
{%- if cookiecutter.job_backend not in ("rq", "celery") %}


async def test_jobs_running_at_once_share_their_claim_and_result_transactions(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    engine = sessionmaker.kw["bind"].sync_engine
    claims = 0
    # Connections whose open transaction records a result, and those transactions' count.
    recording: set[Connection] = set()
    result_transactions = 0

    def executed(connection: Connection, _c: object, statement: str, *_: object) -> None:
        nonlocal claims
        if statement.startswith("UPDATE job SET"):
            claims += "job.attempts +" in statement
            if "result=" in statement:
                recording.add(connection)

    def committed(connection: Connection) -> None:
        nonlocal result_transactions
        if connection in recording:
            recording.discard(connection)
            result_transactions += 1

    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    try:
        async with sessionmaker() as session:
            submitted = await control.submit_many(
                session, [tasks.add.new_job(a=n, b=n) for n in range(50)]
            )
        for job in submitted:
            assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
    finally:
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "commit", committed)
    # One claim and one result transaction per job would be 50 of each.
    assert 1 <= claims < 25
    assert 1 <= result_transactions < 25


async def test_a_job_submitted_with_a_slot_free_starts_in_its_insert(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    engine = sessionmaker.kw["bind"].sync_engine
    claims: list[str] = []

    def executed(_c: Connection, _u: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE job SET") and "job.attempts +" in statement:
            claims.append(statement)

    event.listen(engine, "before_cursor_execute", executed)
    try:
        job = await submit(control, sessionmaker, tasks.add.new_job(a=2, b=2))
        # Running as the request that submitted it sees it, in the database's time.
        assert (job.status, job.attempts, job.started_at) == (JobStatus.RUNNING, 1, job.run_after)
        done = await wait_for(control, job.id, *FINISHED)
    finally:
        event.remove(engine, "before_cursor_execute", executed)
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, 4, 1)
    assert done.started_at == job.run_after, "the time the INSERT wrote"
    assert claims == [], "no claim after the insert"


async def test_jobs_claimed_on_inserts_that_lose_a_key_race_never_run(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    key = f"order-{uuid.uuid4()}"
    # Each starts an attempt before its INSERT; all but one INSERT fail on the key.
    submitted = await asyncio.gather(
        *(
            submit(control, sessionmaker, tasks.nap.new_job(idempotency_key=key, seconds=0))
            for _ in range(20)
        )
    )
    assert len({job.id for job in submitted}) == 1
    await wait_for(control, submitted[0].id, *FINISHED)
    assert [line for line in tasks.noted() if line.startswith("napping")] == [
        f"napping {submitted[0].id}"
    ]
    deadline = time.monotonic() + 5
    while control.backend.in_hand():
        assert time.monotonic() < deadline, "an attempt waits for an INSERT that failed"
        await asyncio.sleep(0.02)


async def test_a_job_cancelled_while_others_claimed_with_it_run_stops_alone(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        cancelled, kept = await control.submit_many(
            session, [tasks.nap.new_job(seconds=60), tasks.nap.new_job(seconds=1)]
        )
    for job in (cancelled, kept):
        await wait_for_note(f"napping {job.id}")
    executors = {(await control.get(job.id)).executor_id for job in (cancelled, kept)}
    assert len(executors) == 1, "claimed together, by one executor"
    # Cancelled as another process would: in the table only, found at the next heartbeat.
    async with sessionmaker() as session:
        assert await moves.cancel(session, cancelled.id)
    await wait_for_note(f"stopped {cancelled.id}")
    assert (await wait_for(control, kept.id, *FINISHED)).result == "rested"
    assert (await control.get(cancelled.id)).status == JobStatus.CANCELLED
{%- endif %}
