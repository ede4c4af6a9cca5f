"""RQ's own view agrees with the job table: its registries, its workers, `rq info`,
rq-dashboard, a requeue, and a job that other code put on the queue."""

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.jobs.errors import JobNotFound
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.processes import Process, free_port, running
from tests.test_jobs import FINISHED, submit, wait_for


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[Queue]:
    """The service's queue as RQ's own code sees it."""
    redis = Redis.from_url(settings.redis_url)
    yield Queue(settings.rq_queue, connection=redis, serializer=JSONSerializer)
    redis.close()


async def eventually(check: Callable[[], Any], within: float = 10) -> Any:
    """The first true value of `check()`; fails with its last value after `within` s."""
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {within} s")
        await asyncio.sleep(0.05)
    return value


def rq_info_state(settings: Settings, worker: str) -> str:
    """The state `rq info` gives the worker named `worker`."""
    command = [sys.executable, "-m", "rq.cli", "info", "--raw", "--url", settings.redis_url]
    output = subprocess.run(
        [*command, settings.rq_queue], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # worker <name> (<host> <ip> <pid>) <state> <queues>. jobs: ...
    [line] = [line for line in output.splitlines() if line.startswith(f"worker {worker} (")]
    state, queues = line.split(") ", 1)[1].split(". ")[0].split(" ", 1)
    assert queues == settings.rq_queue
    return state


def fetch(queue: Queue, job_id: object) -> RQJob:
    return RQJob.fetch(str(job_id), connection=queue.connection, serializer=JSONSerializer)


def error_of(queue: Queue, job_id: object) -> str:
    """The error RQ recorded for the job's last run, or ""."""
    result = fetch(queue, job_id).latest_result()
    return (result.exc_string if result is not None else None) or ""


async def test_rq_sees_each_job_where_the_job_table_has_it(
    control: JobControl,
    sessionmaker: SessionMaker,
    settings: Settings,
    queue: Queue,
    worker: Process,
) -> None:
    [rq_worker] = Worker.all(queue=queue)
    # Registered as "started", then "idle" once it listens on the queue.
    await eventually(lambda: rq_worker.get_state() == "idle")
    assert rq_info_state(settings, rq_worker.name) == "idle"

    # Running: in RQ's started registry, under a busy worker, by its task's name.
    key = "registries"
    held = await submit(control, sessionmaker, tasks.threaded.new_job(key=key))
    await wait_for(control, held.id, JobStatus.RUNNING)
    assert str(held.id) in queue.started_job_registry.get_job_ids()
    busy = Worker.find_by_key(rq_worker.key, connection=queue.connection)
    assert busy is not None
    assert (busy.get_state(), busy.get_current_job_id()) == ("busy", str(held.id))
    assert rq_info_state(settings, rq_worker.name) == "busy"
    assert fetch(queue, held.id).description == held.name
    tasks.note(f"release {key}")

    # Finished: in the finished registry, with the job's result.
    added = await submit(control, sessionmaker, tasks.add.new_job(a=2, b=3))
    assert (await wait_for(control, added.id, *FINISHED)).status == JobStatus.SUCCEEDED
    await eventually(lambda: str(added.id) in queue.finished_job_registry.get_job_ids())
    assert fetch(queue, added.id).return_value() == 5

    # Failed for good, after the table's three attempts: in the failed registry, with the
    # error, and nowhere else.
    failing = await submit(control, sessionmaker, tasks.always_fail.new_job(message="no luck"))
    failed = await wait_for(control, failing.id, *FINISHED, within=30)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 3)
    await eventually(lambda: fetch(queue, failing.id).get_status() == "failed")
    assert str(failing.id) in queue.failed_job_registry.get_job_ids()
    for registry in (queue.started_job_registry, queue.finished_job_registry):
        assert str(failing.id) not in registry.get_job_ids()
    assert "RuntimeError: no luck" in error_of(queue, failing.id)

    # The held job ended too; no job is left in RQ's started registry.
    assert (await wait_for(control, held.id, *FINISHED)).status == JobStatus.SUCCEEDED
    await eventually(lambda: queue.started_job_registry.get_job_ids() == [])
    assert queue.get_job_ids() == []


async def test_an_rq_requeue_is_refused_and_the_tables_retry_moves_the_job_in_rq(
    control: JobControl, sessionmaker: SessionMaker, queue: Queue, worker: Process
) -> None:
    job = await submit(control, sessionmaker, tasks.fail_first_run.new_job(key="requeue"))
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.FAILED
    await eventually(lambda: str(job.id) in queue.failed_job_registry.get_job_ids())

    queue.failed_job_registry.requeue(str(job.id))
    # The worker takes it and refuses it: failed again in RQ, with the way to run it again.
    await eventually(lambda: "jobs retry" in error_of(queue, job.id))
    assert fetch(queue, job.id).get_status() == "failed"
    refused = await control.get(job.id)
    assert (refused.status, refused.attempts) == (JobStatus.FAILED, 1)

    # The table's retry runs it again: RQ files it as finished, and no longer as failed.
    await control.retry(job.id)
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
    await eventually(lambda: fetch(queue, job.id).get_status() == "finished")
    assert str(job.id) in queue.finished_job_registry.get_job_ids()
    assert str(job.id) not in queue.failed_job_registry.get_job_ids()


async def test_a_job_other_code_put_on_the_queue_is_left_to_rq(
    control: JobControl, sessionmaker: SessionMaker, queue: Queue, worker: Process
) -> None:
    # Any function RQ's worker can import, with JSON arguments: RQ runs it as its own.
    foreign = queue.enqueue("os.path.join", "a", "b")
    ours = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=1))
    assert (await wait_for(control, ours.id, *FINISHED)).result == 2
    await eventually(lambda: foreign.get_status(refresh=True) == "finished")
    assert foreign.return_value() == "a/b"
    assert str(foreign.id) in queue.finished_job_registry.get_job_ids()
    # The job table knows nothing of it.
    with pytest.raises(JobNotFound):
        await control.get(uuid.UUID(foreign.id))


@pytest.fixture
def dashboard(settings: Settings, tmp_path: Path) -> Iterator[Process]:
    """rq-dashboard on a free port of 127.0.0.1, on the service's Redis."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def answers(process: Process) -> bool:
        try:
            return httpx.get(f"{url}/0/data/queues.json").status_code == 200
        except httpx.TransportError:
            return False

    command = [sys.executable, "-m", "rq_dashboard", "--bind", "127.0.0.1", "--port", str(port)]
    command += ["--redis-url", settings.redis_url, "--json"]
    with running(command, settings, tmp_path / "dashboard.log", answers, url) as process:
        process.wait_until_up()
        yield process


async def test_rq_dashboard_lists_each_job_by_its_task_and_status(
    control: JobControl,
    sessionmaker: SessionMaker,
    settings: Settings,
    queue: Queue,
    worker: Process,
    dashboard: Process,
) -> None:
    ok = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=2))
    bad = await submit(control, sessionmaker, tasks.always_fail.new_job(message="shown"))
    assert (await wait_for(control, ok.id, *FINISHED)).status == JobStatus.SUCCEEDED
    assert (await wait_for(control, bad.id, *FINISHED, within=30)).status == JobStatus.FAILED
    await eventually(lambda: str(bad.id) in queue.failed_job_registry.get_job_ids())

    async with httpx.AsyncClient(base_url=f"{dashboard.url}/0/data") as rq_dashboard:

        async def listed(registry: str) -> dict[str, str]:
            page = await rq_dashboard.get(f"/jobs/{settings.rq_queue}/{registry}/100/asc/1.json")
            return {job["id"]: job["description"] for job in page.json()["jobs"]}

        assert (await listed("finished"))[str(ok.id)] == ok.name
        assert (await listed("failed"))[str(bad.id)] == bad.name
        shown = (await rq_dashboard.get(f"/job/{bad.id}.json")).json()
        assert (shown["status"], shown["description"]) == ("failed", bad.name)
        assert "RuntimeError: shown" in shown["exc_info"]
