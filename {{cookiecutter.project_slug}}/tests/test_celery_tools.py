"""Celery's own tools see the jobs as the job table does: `celery inspect` shows the
running job by its id and task name; Flower lists each job by its task name, with the
state the table gives it; `celery purge` deletes messages, never jobs."""

import json
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI
from redis import Redis

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.load import wait_until
from tests.processes import Process, environment, free_port, run_module, running, start_worker
from tests.test_jobs import FINISHED, submit, wait_for


async def test_celery_inspect_shows_the_running_job(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings, worker: Process
) -> None:
    job = await submit(control, sessionmaker, tasks.threaded.new_job(key="inspected"))
    await wait_for(control, job.id, JobStatus.RUNNING)
    inspected = run_module(
        "celery", ["-A", "tests.worker", "inspect", "active", "--json"], environment(settings)
    )
    assert inspected.returncode == 0, inspected.stderr
    (active,) = json.loads(inspected.stdout.splitlines()[-1]).values()
    assert [(task["id"], task["name"]) for task in active] == [(str(job.id), "threaded")]
    tasks.note("release inspected")
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED


async def test_a_purged_queue_loses_no_job(
    app: FastAPI, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    """The table still has the jobs queued: a poller sends each again once it has seen
    its message gone for a lease."""
    control: JobControl = app.state.job_control  # no worker yet, to take the messages
    jobs = [await submit(control, sessionmaker, tasks.add.new_job(a=n, b=1)) for n in range(3)]
    with Redis.from_url(settings.redis_url) as redis:
        wait_until(lambda: redis.llen(settings.celery_queue) == 3, 30, "3 messages in Redis")
    purged = run_module("celery", ["-A", "tests.worker", "purge", "-f"], environment(settings))
    assert "Purged 3 messages" in purged.stdout, purged.stdout + purged.stderr
    with start_worker(settings, tmp_path / "worker.log") as worker:
        worker.wait_until_up()
        for n, job in enumerate(jobs):
            done = await wait_for(control, job.id, *FINISHED)
            assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, n + 1, 1)
        assert worker.terminate(timeout=30) == 0, worker.output()


async def test_flower_lists_each_job_by_its_task_name_and_state(
    control: JobControl,
    sessionmaker: SessionMaker,
    settings: Settings,
    tmp_path: Path,
    worker: Process,
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "celery", "-A", "tests.worker", "flower"]
    command += ["--address=127.0.0.1", f"--port={port}"]
    url = f"http://127.0.0.1:{port}"

    def listening(_: Process) -> bool:
        try:
            return httpx.get(f"{url}/healthcheck").status_code == 200
        except httpx.TransportError:
            return False

    # Flower's API answers without a login only when told to: here, on loopback.
    env = {"FLOWER_UNAUTHENTICATED_API": "true"}
    with running(command, settings, tmp_path / "flower.log", listening, env=env) as flower:
        flower.wait_until_up()
        wait_until_flower_sees_the_worker(url)
        # Flower turns the workers' task events on every few seconds; Celery's command
        # does it at once (as `celery worker -E` would from the start).
        enabled = run_module(
            "celery", ["-A", "tests.worker", "control", "enable_events"], environment(settings)
        )
        assert "OK" in enabled.stdout, enabled.stdout + enabled.stderr
        succeeded = await submit(control, sessionmaker, tasks.add.new_job(a=2, b=3))
        failed = await submit(control, sessionmaker, tasks.always_fail.new_job(message="no"))
        for job in (succeeded, failed):
            await wait_for(control, job.id, *FINISHED)
        expected = {
            str(succeeded.id): ("add", "SUCCESS"),
            str(failed.id): ("always_fail", "FAILURE"),
        }

        def listed() -> dict[str, tuple[str, str]]:
            found = httpx.get(f"{url}/api/tasks").json()
            return {key: (task["name"], task["state"]) for key, task in found.items()}

        wait_until(lambda: listed() == expected, 30, "Flower listing both jobs")
        async with httpx.AsyncClient() as client:
            info = await client.get(f"{url}/api/task/info/{failed.id}")
        error = info.json()["exception"]
        assert "RuntimeError: no" in error, error


def wait_until_flower_sees_the_worker(url: str) -> None:
    def seen() -> bool:
        workers = httpx.get(f"{url}/api/workers", params={"refresh": "true"}).json()
        return bool(workers)

    wait_until(seen, 30, "Flower seeing the worker")
