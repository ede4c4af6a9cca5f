"""End to end, in one process with the baked project importable: N jobs submitted one by
one (a transaction each), or `--per-transaction` at a time (submit_many), timed until
every one is `succeeded` in the job table; `--runs` times, the rows of each run deleted
before the next. Prints each run's jobs/s and enqueue-to-finish latency percentiles as a
JSON list.

  service           the baked service's JobControl and backend (for rq and celery: the
                    web side; workers run separately)
  raw-create_task   the usual pattern: insert the row, asyncio.create_task the body,
                    which marks the row done
  raw-aiojobs       the same on an aiojobs Scheduler with the service's concurrency
  raw-rq            insert the rows, Queue.enqueue_many a function that claims each and
                    marks it done (run by a stock `rq worker-pool` started separately)
  raw-celery        insert the rows, send a Celery task that claims each and marks it
                    done (run by a stock `celery worker` started separately)

Usage: python bench/e2e.py MODE --jobs N [--per-transaction K] [--runs R]
"""

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import bench_tasks
from job_service.db import SessionMaker, create_engine, create_sessionmaker
from job_service.models import Job, JobStatus, utcnow
from job_service.settings import Settings
from sqlalchemy.engine import make_url
from sqlmodel import col, delete, func, select, update

POLL_SECONDS = 0.01


@asynccontextmanager
async def database() -> AsyncIterator[SessionMaker]:
    engine = create_engine(Settings().database_url)
    yield create_sessionmaker(engine)
    # Closed while the loop runs: aiosqlite's threads must not outlive it.
    await engine.dispose()


async def insert(sessionmaker: SessionMaker, count: int) -> list[uuid.UUID]:
    async with sessionmaker() as session:
        jobs = [Job(name="noop") for _ in range(count)]
        session.add_all(jobs)
        await session.commit()
        return [job.id for job in jobs]


async def mark_done(sessionmaker: SessionMaker, job_id: uuid.UUID) -> None:
    await bench_tasks.noop.function(None)
    async with sessionmaker() as session:
        await session.exec(
            update(Job)
            .where(col(Job.id) == job_id)
            .values(status=JobStatus.SUCCEEDED, finished_at=utcnow())
        )
        await session.commit()


async def wait_for_all(sessionmaker: SessionMaker, jobs: int) -> None:
    # By name: the service's periodic cleanup job succeeds in the same table.
    done = select(func.count()).where(
        col(Job.status) == JobStatus.SUCCEEDED, col(Job.name) == "noop"
    )
    while True:
        async with sessionmaker() as session:
            if (await session.exec(done)).one() >= jobs:
                return
        await asyncio.sleep(POLL_SECONDS)


async def outcome(sessionmaker: SessionMaker, jobs: int, seconds: float) -> dict[str, float]:
    """A run's figures; its rows are then deleted, so the next run starts from none."""
    noop = col(Job.name) == "noop"
    async with sessionmaker() as session:
        rows = (await session.exec(select(Job.created_at, Job.finished_at).where(noop))).all()
        await session.exec(delete(Job).where(noop))
        await session.commit()
    waits = [(finished - created).total_seconds() for created, finished in rows if finished]
    cuts = statistics.quantiles(waits, n=100)
    return {"jobs_per_second": jobs / seconds, "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


def groups(jobs: int, size: int) -> list[int]:
    """`jobs` split into transactions of `size` jobs."""
    return [min(size, jobs - start) for start in range(0, jobs, size)]


Figures = list[dict[str, float]]


async def service(jobs: int, size: int, runs: int) -> Figures:
    from job_service.main import create_app

    app = create_app(Settings())
    figures = []
    async with app.router.lifespan_context(app):
        control, sessionmaker = app.state.job_control, app.state.sessionmaker
        for _ in range(runs):
            started = time.perf_counter()
            for count in groups(jobs, size):
                async with sessionmaker() as session:
                    if size == 1:
                        await control.submit(session, bench_tasks.noop.new_job())
                    else:
                        new = [bench_tasks.noop.new_job() for _ in range(count)]
                        await control.submit_many(session, new)
            await wait_for_all(sessionmaker, jobs)
            figures.append(await outcome(sessionmaker, jobs, time.perf_counter() - started))
    return figures


async def raw(
    jobs: int, size: int, runs: int, start: Callable[[Awaitable[None]], Awaitable[Any]]
) -> Figures:
    figures = []
    async with database() as sessionmaker:
        for _ in range(runs):
            started = time.perf_counter()
            for count in groups(jobs, size):
                for job_id in await insert(sessionmaker, count):
                    await start(mark_done(sessionmaker, job_id))
            await wait_for_all(sessionmaker, jobs)
            figures.append(await outcome(sessionmaker, jobs, time.perf_counter() - started))
    return figures


async def raw_create_task(jobs: int, size: int, runs: int) -> Figures:
    running: set[asyncio.Task[None]] = set()

    async def start(body: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(body)  # type: ignore[arg-type]
        running.add(task)
        task.add_done_callback(running.discard)

    return await raw(jobs, size, runs, start)


async def raw_aiojobs(jobs: int, size: int, runs: int) -> Figures:
    import aiojobs

    scheduler = aiojobs.Scheduler(limit=10, pending_limit=jobs)
    spawn = scheduler.spawn
    figures = await raw(jobs, size, runs, lambda body: spawn(body))  # type: ignore[arg-type]
    await scheduler.close()
    return figures


def raw_target() -> str:
    """What a raw worker's job connects with: a SQLite file's path, or a plain PostgreSQL
    URL (bench/rq_raw.py)."""
    url = make_url(Settings().database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def raw_rq(jobs: int, size: int, runs: int) -> Figures:
    from redis import Redis
    from rq import Queue

    settings, target = Settings(), raw_target()
    figures = []
    with Redis.from_url(settings.redis_url) as redis:
        queue = Queue(settings.rq_queue, connection=redis)
        async with database() as sessionmaker:
            for _ in range(runs):
                started = time.perf_counter()
                for count in groups(jobs, size):
                    # A group goes to Redis in one round trip, as the service sends it.
                    queue.enqueue_many(
                        [
                            Queue.prepare_data("rq_raw.run", (target, job_id.hex), result_ttl=0)
                            for job_id in await insert(sessionmaker, count)
                        ]
                    )
                await wait_for_all(sessionmaker, jobs)
                figures.append(await outcome(sessionmaker, jobs, time.perf_counter() - started))
    return figures


async def raw_celery(jobs: int, size: int, runs: int) -> Figures:
    from celery_raw import app

    target = raw_target()
    figures = []
    async with database() as sessionmaker:
        for _ in range(runs):
            started = time.perf_counter()
            for count in groups(jobs, size):
                # A group goes to Redis on one connection, as the service sends it.
                with app.producer_or_acquire() as producer:
                    for job_id in await insert(sessionmaker, count):
                        app.send_task("two_writes", (target, job_id.hex), producer=producer)
            await wait_for_all(sessionmaker, jobs)
            figures.append(await outcome(sessionmaker, jobs, time.perf_counter() - started))
    return figures


MODES = {
    "service": service,
    "raw-create_task": raw_create_task,
    "raw-aiojobs": raw_aiojobs,
    "raw-rq": raw_rq,
    "raw-celery": raw_celery,
}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=list(MODES))
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--per-transaction", type=int, default=1, help="jobs submitted together")
    parser.add_argument("--runs", type=int, default=1)
    options = parser.parse_args()
    run = MODES[options.mode](options.jobs, options.per_transaction, options.runs)
    print(json.dumps(asyncio.run(run)))
