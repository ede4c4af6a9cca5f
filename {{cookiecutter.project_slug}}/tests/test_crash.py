"""Crash and shutdown of real processes mid-run: no job is lost, none is left running,
and no attempt of a job runs twice.
{% if cookiecutter.job_backend in ("rq", "celery") %}
{%- if cookiecutter.job_backend == "rq" %}
Three RQ workers run 200 jobs that the test commits to the job table; their pollers send
them to Redis. The workers are killed mid-run and started again.
{%- else %}
Three Celery workers of one child process each run 200 jobs that the test commits to the
job table; their pollers send them to Redis. The workers (or only their children) are
killed mid-run, and started again (or replace their children).
{%- endif %}
{%- else %}
Two uvicorn processes run 200 jobs that the test commits to the job table; their
pollers pick them up. The processes are killed mid-run and started again.
{%- endif %}
"""

import asyncio
{%- if cookiecutter.job_backend == "celery" %}
import os
{%- endif %}
import signal
import time
{%- if cookiecutter.job_backend == "celery" %}
import uuid
{%- endif %}
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlmodel import col, func, select

from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.models import {% if cookiecutter.job_backend == "celery" %}Executor, {% endif %}Job, JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
{%- if cookiecutter.job_backend == "rq" %}
from tests.processes import Process, free_port, start_worker
{%- elif cookiecutter.job_backend == "celery" %}
from tests.processes import Process, children, free_port, start_worker
{%- else %}
from tests.processes import Process, start_web
{%- endif %}

JOBS = 200
{%- if cookiecutter.job_backend in ("rq", "celery") %}
EXECUTORS = 3
# One job at a time in each worker: 200 short jobs keep the 3 workers busy for about 10 s,
# so a kill or a stop after a quarter is done lands mid-run with seconds of margin for a
# busy machine (each look at the table takes longer then).
JOB_SECONDS = (0.1, 0.12, 0.14, 0.16, 0.18, 0.2)
{%- elif cookiecutter.job_backend == "aiojobs" %}
EXECUTORS = 2
# Jobs of different lengths finish at different times, so a kill lands mid-run. The 20
# slots (JOB_CONCURRENCY 10 in each) stay busy for about 5 s: seconds of margin for a busy
# machine after a quarter is done, and each longer than the shutdown grace.
JOB_SECONDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
{%- else %}
EXECUTORS = 2
# All 200 run at once. Jobs of different lengths finish at different times, so a kill
# lands mid-run: a quarter is done after about 1.5 s, the last after 4 s, a margin of
# more than 2 s for a busy machine (each look at the table takes longer then).
JOB_SECONDS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 4.0)
{%- endif %}


async def _enqueue(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        seconds = [JOB_SECONDS[n % len(JOB_SECONDS)] for n in range(JOBS)]
        session.add_all(tasks.work.new_job(seconds=s) for s in seconds)
        await session.commit()
    await engine.dispose()


async def _jobs(settings: Settings) -> list[Job]:
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        jobs = (await session.exec(select(Job).where(col(Job.name) == "work"))).all()
    await engine.dispose()
    return list(jobs)


def jobs(settings: Settings) -> list[Job]:
    return asyncio.run(_jobs(settings))


async def _count(settings: Settings) -> Counter[JobStatus]:
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        by_status = select(Job.status, func.count()).where(col(Job.name) == "work")
        rows = (await session.exec(by_status.group_by(col(Job.status)))).all()
    await engine.dispose()
    return Counter({JobStatus(status): number for status, number in rows})


def count(settings: Settings) -> Counter[JobStatus]:
    # Counted by the database: the tests look often, and loading every row takes longer.
    return asyncio.run(_count(settings))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.02)


@contextmanager
def executors(settings: Settings, logs: Path, round_: int) -> Iterator[list[Process]]:
    """Start them all at once, then wait until each is up."""
    with ExitStack() as stack:
        started = [
{%- if cookiecutter.job_backend in ("rq", "celery") %}
            # Each worker serves its metrics on a port of its own.
            stack.enter_context(
                start_worker(
                    settings.model_copy(update={"metrics_port": free_port()}),
                    logs / f"worker-{round_}-{n}.log",
                )
            )
{%- else %}
            stack.enter_context(start_web(settings, logs / f"web-{round_}-{n}.log"))
{%- endif %}
            for n in range(EXECUTORS)
        ]
        for process in started:
            process.wait_until_up()
        yield started


def mid_run(statuses: Counter[JobStatus]) -> bool:
    return statuses[JobStatus.SUCCEEDED] >= JOBS // 4 and statuses[JobStatus.RUNNING] > 0


def runs() -> Counter[tuple[str, str]]:
    """How often each (job, attempt) ran, from the tasks' notes."""
    notes = [line.split() for line in tasks.noted() if line.startswith("run ")]
    return Counter((job_id, attempt) for _, job_id, attempt, _pid in notes)


def test_sigkill_mid_run_loses_no_job_and_runs_no_attempt_twice(
    settings: Settings, tmp_path: Path
) -> None:
    with executors(settings, tmp_path, 1) as first:
        asyncio.run(_enqueue(settings))
        wait_until(lambda: mid_run(count(settings)), 60, "a quarter done and more running")
        for process in first:
{%- if cookiecutter.job_backend == "celery" %}
            process.kill()  # the main process and its child, as a container is killed
{%- else %}
            process.popen.kill()
{%- endif %}
    at_kill = count(settings)
    assert at_kill[JobStatus.RUNNING] > 0, f"the kill should land mid-run: {at_kill}"

    with executors(settings, tmp_path, 2) as second:
        wait_until(lambda: count(settings)[JobStatus.SUCCEEDED] == JOBS, 90, "all succeeded")
        for process in second:
            assert process.terminate(timeout=15) == 0, process.output()

    final = jobs(settings)
    assert Counter(job.status for job in final) == {JobStatus.SUCCEEDED: JOBS}
    rerun = sum(job.lost_attempts > 0 for job in final)
    assert rerun >= at_kill[JobStatus.RUNNING]
    # Each rerun is a new attempt; the one cut short counts as lost, not against the job.
    assert all(job.attempts - job.lost_attempts == 1 for job in final)
    assert max(runs().values()) == 1, "an attempt of a job ran twice"
    print(
        f"SIGKILL: {JOBS} jobs, killed at {at_kill[JobStatus.SUCCEEDED]} succeeded and "
        f"{at_kill[JobStatus.RUNNING]} running; rerun {rerun}; lost 0"
    )


def test_sigterm_mid_run_finishes_or_requeues_and_a_restart_completes(
    settings: Settings, tmp_path: Path
) -> None:
    # A lease long enough not to expire here: this test is about shutdown, not crashes.
    update = {"job_shutdown_grace_seconds": 0.3, "job_lease_seconds": 10.0}
    settings = settings.model_copy(update=update)
    with executors(settings, tmp_path, 1) as first:
        asyncio.run(_enqueue(settings))
        wait_until(lambda: count(settings)[JobStatus.SUCCEEDED] >= JOBS // 4, 60, "a quarter done")
        started = time.monotonic()
        # All at once: one still running would take over the jobs the others gave back.
        for process in first:
            process.popen.send_signal(signal.SIGTERM)
        for process in first:
            assert process.exit_code(timeout=15) == 0, process.output()
        stop_seconds = time.monotonic() - started
    at_stop = count(settings)
    assert at_stop[JobStatus.RUNNING] == 0, f"jobs left running after shutdown: {at_stop}"
    assert at_stop[JobStatus.QUEUED] > 0, f"the stop should land mid-run: {at_stop}"
    # An interrupted attempt is given back, not counted.
    assert all(job.attempts <= 1 for job in jobs(settings))

    with executors(settings, tmp_path, 2) as second:
        wait_until(lambda: count(settings)[JobStatus.SUCCEEDED] == JOBS, 90, "all succeeded")
        for process in second:
            assert process.terminate(timeout=15) == 0, process.output()
    assert count(settings) == {JobStatus.SUCCEEDED: JOBS}
    print(
        f"SIGTERM: {JOBS} jobs, stopped in {stop_seconds:.2f} s at "
        f"{at_stop[JobStatus.SUCCEEDED]} succeeded, {at_stop[JobStatus.QUEUED]} queued; lost 0"
    )
{%- if cookiecutter.job_backend == "celery" %}


async def _running_on(settings: Settings, pids: list[int]) -> dict[uuid.UUID, int]:
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        running = select(Job.id, Executor.pid).join(Executor, col(Job.executor_id) == Executor.id)
        running = running.where(Job.status == JobStatus.RUNNING, col(Executor.pid).in_(pids))
        held = dict((await session.exec(running)).all())
    await engine.dispose()
    return held


def running_on(settings: Settings, pids: list[int]) -> dict[uuid.UUID, int]:
    """The jobs running on the executors of these processes, and the process of each."""
    return asyncio.run(_running_on(settings, pids))


def test_sigkill_of_the_child_processes_mid_run_loses_no_job(
    settings: Settings, tmp_path: Path
) -> None:
    """Celery replaces the children and gives their messages back; the job table runs
    their jobs again once the killed children's leases expire."""
    with executors(settings, tmp_path, 1) as workers:
        asyncio.run(_enqueue(settings))
        wait_until(lambda: mid_run(count(settings)), 60, "a quarter done and more running")
        killed: list[int] = []
        lost: set[uuid.UUID] = set()

        def kill_those_running_jobs() -> bool:
            # Those running a job as the table last said: on a busy machine all three
            # can be between two jobs at once, and a kill then loses nothing.
            pids = [child for worker in workers for child in children(worker)]
            for child in set(running_on(settings, pids).values()):
                os.kill(child, signal.SIGKILL)
                killed.append(child)
            # A dead child's jobs stay running in the table until its lease runs out.
            lost.update(running_on(settings, killed))
            return bool(lost)

        wait_until(kill_those_running_jobs, 30, "a child killed while running a job")
        at_kill = count(settings)
        wait_until(lambda: count(settings)[JobStatus.SUCCEEDED] == JOBS, 90, "all succeeded")
        for worker in workers:
            assert worker.terminate(timeout=15) == 0, worker.output()

    final = jobs(settings)
    assert Counter(job.status for job in final) == {JobStatus.SUCCEEDED: JOBS}
    assert all(job.lost_attempts == 1 for job in final if job.id in lost)
    assert all(job.attempts - job.lost_attempts == 1 for job in final)
    assert max(runs().values()) == 1, "an attempt of a job ran twice"
    print(
        f"SIGKILL of the children: {JOBS} jobs, killed at {at_kill[JobStatus.SUCCEEDED]} "
        f"succeeded, {len(killed)} children holding {len(lost)} jobs; all rerun; lost 0"
    )
{%- endif %}
