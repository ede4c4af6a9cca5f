"""Celery's worker, on the service's Celery app: runs jobs in its child processes, loses
none when a child or the whole worker dies, and shuts down without losing one."""

import os
import signal
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI
from kombu import Connection
from redis import Redis

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.backend import RUN_JOB, Backend
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.tasks.cleanup import cleanup
from tests import tasks
from tests.load import wait_until
from tests.processes import Process, children, metrics_ports, running, start_worker
from tests.test_jobs import FINISHED, submit, wait_for


async def test_the_worker_command_runs_a_job_and_stops_on_sigterm(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    control: JobControl = app.state.job_control
    log = tmp_path / "worker.log"
    # The README's command, on the service's own app.
    command = [sys.executable, "-m", "celery", "-A", "{{ cookiecutter.project_slug }}.worker"]
    command += ["worker", "--concurrency", "1"]

    def ready(worker: Process) -> bool:
        return log.exists() and " ready." in worker.output()

    with running(command, settings, log, ready) as worker:
        worker.wait_until_up()
        # One of the service's own tasks.
        job = await submit(control, sessionmaker, cleanup.new_job())
        assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
        assert worker.terminate(timeout=60) == 0, worker.output()
    # A job run, then stopped idle: nothing went wrong, so nothing says so (but Celery's
    # warning that it runs as root, where the tests do).
    lines = log.read_text().splitlines()
    warned = [line for line in lines if "[warning" in line or "[error" in line]
    assert [line for line in warned if "superuser privileges" not in line] == []


async def test_two_child_processes_run_jobs_side_by_side_each_serving_its_metrics(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    control: JobControl = app.state.job_control
    with start_worker(settings, tmp_path / "pool.log", pool=2) as pool:
        pool.wait_until_up()
        held = [
            await submit(control, sessionmaker, tasks.threaded.new_job(key=f"pool {n}"))
            for n in (1, 2)
        ]
        # One job at a time per child: both running means both children run jobs.
        for job in held:
            await wait_for(control, job.id, JobStatus.RUNNING)
        # Each child serves its own counts, on the first free port from METRICS_PORT.
        ports = metrics_ports(pool)
        assert len(set(ports)) == 2, ports
        assert min(ports) >= settings.metrics_port, ports
        async with httpx.AsyncClient() as client:
            for port in ports:
                answer = await client.get(f"http://127.0.0.1:{port}/metrics")
                assert answer.status_code == 200
                assert "jobs_total" in answer.text
        for n in (1, 2):
            tasks.note(f"release pool {n}")
        for job in held:
            assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
        assert pool.terminate(timeout=30) == 0, pool.output()


async def test_sigterm_gives_the_running_job_its_grace_then_queues_it_again(
    control: JobControl, sessionmaker: SessionMaker, worker: Process
) -> None:
    job = await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))
    await wait_for(control, job.id, JobStatus.RUNNING)
    assert worker.terminate(timeout=30) == 0, worker.output()
    assert f"stopped {job.id}" in tasks.noted()
    requeued = await control.get(job.id)
    assert (requeued.status, requeued.attempts, requeued.executor_id) == (JobStatus.QUEUED, 0, None)


async def test_a_child_killed_mid_job_loses_it_to_no_one(
    control: JobControl, sessionmaker: SessionMaker, worker: Process
) -> None:
    """Celery gives the killed child's message back at once; the job table refuses it
    while the job's lease runs, then queues the job again, counted as lost."""
    job = await submit(control, sessionmaker, tasks.work.new_job(seconds=0.5))
    await wait_for(control, job.id, JobStatus.RUNNING)
    (child,) = children(worker)
    os.kill(child, signal.SIGKILL)
    done = await wait_for(control, job.id, *FINISHED)
    assert (done.status, done.attempts, done.lost_attempts) == (JobStatus.SUCCEEDED, 2, 1)
    # Two attempts, each run once; the worker replaced its child and goes on.
    runs = [line.split()[2] for line in tasks.noted() if line.startswith(f"run {job.id}")]
    assert runs == ["1", "2"]
    assert worker.popen.poll() is None


async def test_a_second_message_of_a_job_that_ran_is_acknowledged_and_changes_nothing(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings, worker: Process
) -> None:
    job = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=2))
    done = await wait_for(control, job.id, *FINISHED)
    # As Redis gives back a message after the visibility timeout, or a second sender.
    assert isinstance(control.backend, Backend)
    control.backend.app.send_task(RUN_JOB, args=(str(job.id),), task_id=str(job.id))
    wait_until(lambda: "not run" in worker.output(), 30, "the second message refused")
    again = await control.get(job.id)
    assert (again.status, again.attempts, again.finished_at) == (
        done.status,
        done.attempts,
        done.finished_at,
    )
    with Redis.from_url(settings.redis_url) as redis:
        # Celery's Redis transport keeps each message taken and not yet acknowledged.
        def taken() -> bool:
            return any(str(job.id).encode() in raw for raw in redis.hvals("unacked"))

        wait_until(lambda: not taken(), 30, "the message acknowledged")
        assert redis.llen(settings.celery_queue) == 0


class Planted:
    """What someone who can write to Redis could plant in a message: unpickling it runs
    code (here, it creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


async def test_a_pickled_message_is_never_loaded(
    settings: Settings, tmp_path: Path, worker: Process
) -> None:
    marker = tmp_path / "unpickled"
    with Connection(settings.redis_url) as connection:
        connection.Producer(serializer="pickle").publish(
            ((Planted(marker),), {}, {}),
            routing_key=settings.celery_queue,
            headers={"task": RUN_JOB, "id": "planted", "lang": "py"},
        )
        wait_until(lambda: "untrusted content" in worker.output(), 30, "the message refused")
    assert not marker.exists(), "the worker unpickled a message"
