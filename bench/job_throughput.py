"""Jobs per second, end to end: the baked services against RQ's own forking worker.

Bakes each backend's project (SQLite), and times N trivial jobs from the first enqueue
until every one is `succeeded` in the job table, one executor each:

  create_task  the web process's backend: jobs submitted one by one through
               `JobQueue.submit` (one transaction each), run as asyncio tasks;
  aiojobs      the same on an aiojobs Scheduler (concurrency 10);
  rq           `python -m <slug>.worker`: RQ's non-forking worker with one event loop,
               one engine and one Redis client for its lifetime (what ships);
  rq-forking   RQ's default forking `Worker`, each job running the same shared runner
               under `asyncio.run` with its own engine (a new loop and engine per job);
  rq-raw       RQ's default forking `Worker` running a no-op function: the fork floor.

The forking workers import the job modules before they fork, as a careful deployment
would, so each job pays for its fork and set-up, not for imports. A throwaway
redis-server listens on 127.0.0.1 and is stopped at the end.

Usage: python bench/job_throughput.py [--jobs 300] [--runs 3]
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
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cookiecutter.main import cookiecutter
from redis import Redis
from rq import Queue, Worker

TEMPLATE = Path(__file__).resolve().parent.parent
SLUG = "job_service"
VARIANTS = ("create_task", "aiojobs", "rq", "rq-forking", "rq-raw")

TASKS = """
from job_service.jobs.registry import JobContext, task

@task()
async def noop(ctx: JobContext) -> None:
    return None
"""
IN_PROCESS = """
import asyncio
import sys
import time

from sqlmodel import col, func, select

import bench_tasks
from job_service.main import create_app
from job_service.models import Job, JobStatus
from job_service.settings import Settings


async def main(jobs: int) -> None:
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        queue, sessionmaker = app.state.jobs, app.state.sessionmaker
        succeeded = select(func.count()).where(col(Job.status) == JobStatus.SUCCEEDED)
        started = time.perf_counter()
        for _ in range(jobs):
            async with sessionmaker() as session:
                await queue.submit(session, bench_tasks.noop.new_job())
        while True:
            async with sessionmaker() as session:
                if (await session.exec(succeeded)).one() == jobs:
                    break
            await asyncio.sleep(0.005)
        print(time.perf_counter() - started)


asyncio.run(main(int(sys.argv[1])))
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
        await Runner(create_sessionmaker(engine), get_settings()).run(uuid.UUID(job_id))
        await engine.dispose()

    asyncio.run(run())


def noop() -> None:
    return None
"""
FORKING_WORKER = """
import sys

import forking  # noqa: F401
from redis import Redis
from rq import Queue, Worker

redis = Redis.from_url(sys.argv[1])
Worker([Queue(sys.argv[2], connection=redis)], connection=redis).work()
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
        query = "SELECT count(*) FROM job WHERE status = 'succeeded'"
        return int(connection.execute(query).fetchone()[0])


def bake(work: Path, backend: str) -> Path:
    output = work / backend
    extra = {"job_backend": backend}
    project = Path(
        cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output), extra_context=extra)
    )
    (project / "bench_tasks.py").write_text(TASKS)
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    port = free_port()
    redis_server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        projects = {backend: bake(work, backend) for backend in ("create_task", "aiojobs", "rq")}
        (projects["rq"] / "forking.py").write_text(FORKING)
        (projects["rq"] / "forking_worker.py").write_text(FORKING_WORKER)
        sys.path.insert(0, str(projects["rq"]))
        redis = Redis.from_url(redis_url)
        wait(lambda: _pings(redis), 10, "redis-server")
        results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for run in range(options.runs):
            for variant in VARIANTS:
                project = projects[variant.split("-")[0]]
                database = work / f"{variant}-{run}.db"
                env = {
                    **os.environ,
                    "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
                    "REDIS_URL": redis_url,
                    "RQ_QUEUE": f"{variant}-{run}",
                    "STORAGE_DIR": str(work / "storage"),
                    "LOG_LEVEL": "WARNING",
                    "PYTHONPATH": str(project),
                }
                migrate = [sys.executable, "-m", "alembic", "upgrade", "head"]
                subprocess.run(migrate, cwd=project, env=env, check=True, capture_output=True)
                if variant.startswith("rq"):
                    seconds = measure_rq(variant, options.jobs, project, env, redis, database)
                else:
                    seconds = measure_in_process(options.jobs, project, env)
                results[variant].append(seconds)
                print(
                    f"run {run + 1} {variant:12} {options.jobs / seconds:8.1f} jobs/s", flush=True
                )
        print(f"\n{options.jobs} jobs, one executor, median of {options.runs} runs (min-max):")
        for variant, timings in results.items():
            rates = sorted(options.jobs / seconds for seconds in timings)
            low, high = rates[0], rates[-1]
            print(f"  {variant:12} {statistics.median(rates):8.1f} jobs/s  ({low:.1f}-{high:.1f})")
    finally:
        redis_server.terminate()
        redis_server.wait()
        shutil.rmtree(work, ignore_errors=True)


def _pings(redis: Redis) -> bool:
    try:
        return bool(redis.ping())
    except Exception:
        return False


def measure_in_process(jobs: int, project: Path, env: dict[str, str]) -> float:
    (project / "in_process.py").write_text(IN_PROCESS)
    command = [sys.executable, "in_process.py", str(jobs)]
    done = subprocess.run(command, cwd=project, env=env, check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def measure_rq(
    variant: str, jobs: int, project: Path, env: dict[str, str], redis: Redis, database: Path
) -> float:
    queue = Queue(env["RQ_QUEUE"], connection=redis)
    if variant == "rq":
        command = [sys.executable, "-c", BAKED_WORKER]
    else:
        command = [sys.executable, "forking_worker.py", env["REDIS_URL"], queue.name]
    worker = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait(lambda: len(Worker.all(queue=queue)) == 1, 30, "the worker")
        ids = [str(uuid.uuid4()) for _ in range(jobs)]
        function = {
            "rq": f"{SLUG}.worker.run_job",
            "rq-forking": "forking.run_job",
            "rq-raw": "forking.noop",
        }[variant]
        if variant != "rq-raw":
            asyncio.run(_insert_jobs(env["DATABASE_URL"], ids))
        started = time.perf_counter()
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    function,
                    args=() if variant == "rq-raw" else (job_id,),
                    job_id=job_id,
                    result_ttl=0,
                )
                for job_id in ids
            ]
        )
        if variant == "rq-raw":
            registry = queue.started_job_registry
            wait(lambda: queue.count == 0 and registry.count == 0, 600, "the no-op jobs")
        else:
            wait(lambda: succeeded(database) == jobs, 600, "the jobs")
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()


async def _insert_jobs(database_url: str, ids: list[str]) -> None:
    # The rq project baked above, put on sys.path at run time.
    from job_service.db import create_engine, create_sessionmaker  # type: ignore[import-not-found]
    from job_service.models import Job  # type: ignore[import-not-found]

    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        session.add_all(Job(id=uuid.UUID(job_id), name="noop", max_attempts=1) for job_id in ids)
        await session.commit()
    await engine.dispose()


if __name__ == "__main__":
    main()
