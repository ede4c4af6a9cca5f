"""The RQ worker process: registers, runs jobs, and shuts down without losing one."""

import selectors
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Queue, Worker

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.queue import JobQueue
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.conftest import PROJECT_ROOT
from tests.processes import Process, environment
from tests.test_jobs import submit, wait_for


def wait_for_line(process: subprocess.Popen[str], texts: tuple[str, ...], timeout: float) -> None:
    """Read the process's output until a line holds all `texts`; fail with the output if not."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if all(text in line for text in texts):
                return
    raise AssertionError(f"no line with {texts!r} within {timeout} s:\n{''.join(seen)}")


def test_worker_registers_and_stops_on_sigterm(settings: Settings) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.project_slug }}.worker"],
        cwd=PROJECT_ROOT,
        env={**environment(settings), "LOG_LEVEL": "DEBUG"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    redis = Redis.from_url(settings.redis_url)
    queue = Queue(settings.rq_queue, connection=redis)
    try:
        # Logged at DEBUG from the work loop, after RQ has installed its signal handlers
        # (the INFO line with the same words comes before them).
        wait_for_line(worker, ("DEBUG", "*** Listening on"), timeout=60)
        assert [w.pid for w in Worker.all(queue=queue)] == [worker.pid]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert Worker.all(queue=queue) == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        redis.close()


async def test_sigterm_gives_the_running_job_its_grace_then_queues_it_again(
    jobs: JobQueue, sessionmaker: SessionMaker, worker: Process
) -> None:
    job = await submit(jobs, sessionmaker, tasks.nap.new_job(seconds=60))
    await wait_for(jobs, job.id, JobStatus.RUNNING)
    assert worker.terminate(timeout=30) == 0, worker.output()
    assert f"stopped {job.id}" in tasks.noted()
    requeued = await jobs.get(job.id)
    assert (requeued.status, requeued.attempts, requeued.lease_owner) == (JobStatus.QUEUED, 0, None)
