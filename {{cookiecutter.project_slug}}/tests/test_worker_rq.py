"""RQ's worker, with the service's worker class: registers, runs jobs, and shuts down
without losing one."""

import pickle
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI
from redis import Redis
from rq import Queue, Worker
from rq.job import Job as RQJob

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.tasks.cleanup import cleanup
from tests import tasks
from tests.processes import Process, metrics_ports, running, start_worker
from tests.test_jobs import FINISHED, submit, wait_for


def logged(log: Path, *texts: str) -> bool:
    """Whether a line of the log holds all `texts`."""
    lines = log.read_text().splitlines() if log.exists() else []
    return any(all(text in line for text in texts) for line in lines)


async def test_the_worker_command_registers_runs_a_job_and_stops_on_sigterm(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    control: JobControl = app.state.job_control
    log = tmp_path / "worker.log"
    redis = Redis.from_url(settings.redis_url)
    queue = Queue(settings.rq_queue, connection=redis)
    command = [sys.executable, "-m", "{{ cookiecutter.project_slug }}.worker"]

    def listening(_: Process) -> bool:
        # Logged by RQ's worker once its signal handlers are in place.
        return logged(log, "Listening on", settings.rq_queue)

    with running(command, settings, log, listening, env={"LOG_LEVEL": "DEBUG"}) as worker:
        worker.wait_until_up()
        assert [w.pid for w in Worker.all(queue=queue)] == [worker.popen.pid]
        # One of the service's own tasks, run by the worker class the command names.
        job = await submit(control, sessionmaker, cleanup.new_job())
        assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
        assert worker.terminate(timeout=60) == 0
    assert Worker.all(queue=queue) == []
    # A job run, then stopped idle: nothing went wrong, so nothing says so.
    lines = log.read_text().splitlines()
    assert [line for line in lines if "[warning" in line or "[error" in line] == []
    redis.close()


async def test_a_worker_pool_runs_jobs_side_by_side_each_serving_its_metrics(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    control: JobControl = app.state.job_control
    with start_worker(settings, tmp_path / "pool.log", pool=2) as pool:
        pool.wait_until_up()
        held = [
            await submit(control, sessionmaker, tasks.threaded.new_job(key=f"pool {n}"))
            for n in (1, 2)
        ]
        # One job at a time per process: both running means both processes run jobs.
        for job in held:
            await wait_for(control, job.id, JobStatus.RUNNING)
        # Each process serves its own counts, on the first free port from METRICS_PORT.
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
    with Redis.from_url(settings.redis_url) as redis:
        assert Worker.all(queue=Queue(settings.rq_queue, connection=redis)) == []


async def test_sigterm_gives_the_running_job_its_grace_then_queues_it_again(
    control: JobControl, sessionmaker: SessionMaker, worker: Process
) -> None:
    job = await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))
    await wait_for(control, job.id, JobStatus.RUNNING)
    assert worker.terminate(timeout=30) == 0, worker.output()
    assert f"stopped {job.id}" in tasks.noted()
    requeued = await control.get(job.id)
    assert (requeued.status, requeued.attempts, requeued.executor_id) == (JobStatus.QUEUED, 0, None)


async def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_sent_again(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    control: JobControl = app.state.job_control
    job = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=2))
    # What a worker's dequeue does; killed right after it, the worker leaves the job on
    # RQ's intermediate list, "queued" in RQ, and queued in the table.
    queue = Queue(settings.rq_queue, connection=Redis.from_url(settings.redis_url))
    assert queue.connection.lmove(queue.key, queue.intermediate_queue_key) == str(job.id).encode()
    with start_worker(settings, tmp_path / "worker.log") as worker:
        worker.wait_until_up()
        done = await wait_for(control, job.id, *FINISHED)
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, 3)
    queue.connection.close()


class Planted:
    """What someone who can write to Redis could plant in a job's record: unpickling it
    runs code (here, it creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


async def test_a_pickled_payload_in_a_jobs_redis_record_is_never_loaded(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    control: JobControl = app.state.job_control
    job = await submit(control, sessionmaker, tasks.add.new_job(a=2, b=2))
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Planted(marker))
    assert not marker.exists()
    redis = Redis.from_url(settings.redis_url)
    key = RQJob.key_for(str(job.id))
    assert redis.exists(key), "the job was not sent to Redis"
    # The fields RQ's default (pickle) serializer loads when it reads a job's record.
    redis.hset(key, mapping=dict.fromkeys(("meta", "result"), payload))
    # The web process sends the job again, as a poller does every due job it finds queued:
    # it looks at the job's record in Redis to see whether it is already on its way.
    await control.backend.dispatch([job.id])
    # A worker takes the job, runs it and clears its record.
    with start_worker(settings, tmp_path / "worker.log") as worker:
        worker.wait_until_up()
        done = await wait_for(control, job.id, *FINISHED)
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, 4)
    assert not marker.exists(), "a process of the service unpickled a job's record in Redis"
    assert Queue(settings.rq_queue, connection=redis).get_job_ids() == []
    redis.close()
