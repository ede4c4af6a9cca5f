"""Fork per job or not: how fast an RQ worker runs the baked service's jobs.

Bakes the rq + sqlite project, starts a throwaway redis-server on 127.0.0.1, and times
N trivial jobs from enqueue until every one is `succeeded` in the job table, for:

  baked    `python -m <slug>.worker`: RQ's non-forking worker, one event loop, one
           engine and one Redis client for the process's lifetime (what ships);
  forking  RQ's default forking `Worker`, each job running the same shared runner
           under `asyncio.run` with its own engine (what a naive port does);
  raw      RQ's default forking `Worker` running a no-op function: the fork floor.

Usage: python bench/rq_worker_model.py [--jobs 300] [--runs 3]
"""

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cookiecutter.main import cookiecutter
from redis import Redis
from rq import Queue, Worker

TEMPLATE = Path(__file__).resolve().parent.parent
SLUG = "job_service"

TASKS = """
from job_service.jobs.registry import JobContext, task

@task()
async def noop(ctx: JobContext) -> None:
    return None
"""
FORKING = """
import asyncio
import uuid

import bench_tasks  # noqa: F401
from job_service.db import create_engine, create_sessionmaker
from job_service.jobs.runner import Runner
from job_service.settings import get_settings


def run_job(job_id: str) -> None:
    async def run() -> None:
        engine = create_engine(get_settings().database_url)
        await Runner(create_sessionmaker(engine), 30).run(uuid.UUID(job_id))
        await engine.dispose()

    asyncio.run(run())


def noop() -> None:
    return None
"""
BAKED_WORKER = "import bench_tasks; from job_service import worker; worker.main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def succeeded(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(
            connection.execute("SELECT count(*) FROM job WHERE status='succeeded'").fetchone()[0]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-rq-"))
    port = free_port()
    redis_server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        project = Path(
            cookiecutter(
                str(TEMPLATE),
                no_input=True,
                output_dir=str(work),
                extra_context={"job_backend": "rq"},
            )
        )
        sys.path.insert(0, str(project))
        (project / "bench_tasks.py").write_text(TASKS)
        (project / "forking.py").write_text(textwrap.dedent(FORKING))
        redis_url = f"redis://127.0.0.1:{port}/0"
        redis = Redis.from_url(redis_url)
        wait(lambda: _pings(redis), 10, "redis-server")
        results: dict[str, list[float]] = {"baked": [], "forking": [], "raw": []}
        for run in range(options.runs):
            for variant in results:
                database = work / f"{variant}-{run}.db"
                queue_name = f"{variant}-{run}"
                env = {
                    **os.environ,
                    "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
                    "REDIS_URL": redis_url,
                    "RQ_QUEUE": queue_name,
                    "LOG_LEVEL": "WARNING",
                    "PYTHONPATH": str(project),
                }
                subprocess.run(
                    [sys.executable, "-m", "alembic", "upgrade", "head"],
                    cwd=project,
                    env=env,
                    check=True,
                    capture_output=True,
                )
                results[variant].append(
                    measure(variant, options.jobs, project, env, redis, queue_name, database)
                )
                print(
                    f"run {run + 1} {variant:8} {options.jobs / results[variant][-1]:8.1f} jobs/s",
                    flush=True,
                )
        print(f"\n{options.jobs} jobs, 1 worker, median of {options.runs} runs (min-max), jobs/s:")
        for variant, seconds in results.items():
            rates = sorted(options.jobs / s for s in seconds)
            print(
                f"  {variant:8} {statistics.median(rates):8.1f}  ({rates[0]:.1f}-{rates[-1]:.1f})"
            )
    finally:
        redis_server.terminate()
        redis_server.wait()
        shutil.rmtree(work, ignore_errors=True)


def _pings(redis: Redis) -> bool:
    try:
        return bool(redis.ping())
    except Exception:
        return False


def measure(
    variant: str,
    jobs: int,
    project: Path,
    env: dict[str, str],
    redis: Redis,
    queue_name: str,
    database: Path,
) -> float:
    if variant == "baked":
        command = [sys.executable, "-c", BAKED_WORKER]
    else:
        command = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--url",
            env["REDIS_URL"],
            "-q",
            queue_name,
        ]
    worker = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    queue = Queue(queue_name, connection=redis)
    try:
        wait(lambda: len(Worker.all(queue=queue)) == 1, 30, "the worker")
        ids = [str(uuid.uuid4()) for _ in range(jobs)]
        if variant != "raw":
            asyncio.run(_insert_jobs(env["DATABASE_URL"], ids))
        function = {
            "baked": f"{SLUG}.worker.run_job",
            "forking": "forking.run_job",
            "raw": "forking.noop",
        }[variant]
        started = time.perf_counter()
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    function,
                    args=() if variant == "raw" else (job_id,),
                    job_id=job_id,
                    result_ttl=0,
                )
                for job_id in ids
            ]
        )
        if variant == "raw":
            wait(
                lambda: queue.count == 0 and queue.started_job_registry.count == 0, 600, "raw jobs"
            )
        else:
            wait(lambda: succeeded(database) == jobs, 600, "jobs")
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()


async def _insert_jobs(database_url: str, ids: list[str]) -> None:
    # The project baked above, put on sys.path at run time.
    from job_service.db import create_engine, create_sessionmaker  # type: ignore[import-not-found]
    from job_service.models import Job  # type: ignore[import-not-found]

    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        session.add_all(Job(id=uuid.UUID(job_id), name="noop", max_attempts=1) for job_id in ids)
        await session.commit()
    await engine.dispose()


if __name__ == "__main__":
    main()
