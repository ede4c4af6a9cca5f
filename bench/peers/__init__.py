"""Peer job systems, measured end to end as the template's service is: `jobs` trivial jobs
submitted from this process one by one (or 100 at a time), timed from the first
submission until the peer's own status API says every one is done. Each peer runs its
standard worker command as 2 worker processes, started and ready before the clock starts,
logging at WARNING like the template's services.

Each call starts clean: a Redis peer gets the Redis database it is given flushed, a
PostgreSQL peer a database of its own with the peer's schema applied (dropped afterwards).

Run on its own from bench/: `python -m peers [--jobs 2000]` starts redis-server and
PostgreSQL in a temporary folder, measures every peer and prints JSON.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus as ArqStatus
from celery import Celery  # type: ignore[import-untyped]  # Celery ships no type hints
from celery.result import ResultSet  # type: ignore[import-untyped]
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import ResultMissing
from dramatiq.results.backends.redis import RedisBackend
from harness import Forked, processes
from procrastinate import App, PsycopgConnector
from procrastinate.jobs import Status as ProcrastinateStatus
from redis import Redis
from saq import Queue
from saq.job import Status as SaqStatus
from taskiq.exceptions import TaskiqResultTimeoutError
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker
from taskiq_redis.exceptions import ResultIsMissingError

PEERS_DIR = Path(__file__).resolve().parent
WORKERS = 2
# Jobs at once in each worker process: SAQ's and ARQ's default, Dramatiq's threads near
# its default of 8.
CONCURRENCY = 10
# Celery's prefork pool runs one job per child: its default is a child per core.
CELERY_CHILDREN = os.cpu_count() or 2
BATCH = 100
POLL_SECONDS = 0.01
READY_SECONDS = 60
STOP_SECONDS = 10
# Calls at once when a peer reads job states one call per job (taskiq, ARQ).
CHUNK = 100


@dataclass(frozen=True)
class Peer:
    name: str
    keeps: str
    server: str
    concurrency: str


def async_jobs(noun: str) -> str:
    return f"{WORKERS} processes x {CONCURRENCY} {noun}"


PEERS = [
    Peer("SAQ on Redis", "Redis only", "redis", async_jobs("async jobs")),
    Peer("taskiq on Redis", "Redis only", "redis", async_jobs("async tasks")),
    Peer("Dramatiq on Redis", "Redis only", "redis", async_jobs("threads")),
    Peer(
        "Celery on Redis",
        "Redis only",
        "redis",
        f"{WORKERS} workers x {CELERY_CHILDREN} prefork processes",
    ),
    Peer("ARQ on Redis", "Redis only", "redis", async_jobs("async jobs")),
    Peer("SAQ on PostgreSQL", "a PostgreSQL row", "postgresql", async_jobs("async jobs")),
    Peer("Procrastinate on PostgreSQL", "a PostgreSQL row", "postgresql", async_jobs("async jobs")),
    Peer(
        f"Procrastinate on PostgreSQL, {BATCH} at a time",
        "a PostgreSQL row",
        "postgresql",
        async_jobs("async jobs"),
    ),
]


class System(ABC):
    """One peer as its client sees it: the worker command and the peer's own APIs."""

    def __init__(self, url: str, queue: str, logs: list[tuple[Path, int]]) -> None:
        self.url = url
        self.queue = queue
        # Each worker's log, and its size before that worker started.
        self.logs = logs

    def environment(self, worker: int) -> dict[str, str]:
        return {
            "PEER_URL": self.url,
            "PEER_QUEUE": self.queue,
            "PEER_CONCURRENCY": str(CONCURRENCY),
            "PEER_WORKER": str(worker),
        }

    @abstractmethod
    def command(self, worker: int) -> list[str]: ...

    @abstractmethod
    async def open(self) -> None:
        """Connect, and apply the peer's schema if it has one."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ready(self) -> int:
        """How many workers are up, as far as the peer tells."""

    @abstractmethod
    async def submit(self, count: int) -> list[Any]:
        """Submit `count` jobs one by one; their handles."""

    @abstractmethod
    async def done(self, job: Any) -> bool:
        """Whether one job is done, from its status."""

    @abstractmethod
    async def pending(self, jobs: list[Any]) -> list[Any]:
        """The jobs not done yet, read in batches; raises if one failed."""


def failed(job: object, status: object) -> RuntimeError:
    return RuntimeError(f"job {job} ended {status}")


async def in_chunks(state: Callable[[str], Awaitable[str | None]], jobs: list[str]) -> list[str]:
    """The jobs whose `state` (a call per job) is not done, CHUNK calls at a time."""
    left: list[str] = []
    for start in range(0, len(jobs), CHUNK):
        states = await asyncio.gather(*map(state, jobs[start : start + CHUNK]))
        left += [job for job in states if job is not None]
    return left


class Saq(System):
    def command(self, worker: int) -> list[str]:
        return [sys.executable, "-m", "saq", "saq_app.settings"]

    async def open(self) -> None:
        self.client = Queue.from_url(self.url, name=self.queue)
        # On PostgreSQL this creates SAQ's tables, before any worker starts.
        await self.client.connect()

    async def close(self) -> None:
        await self.client.disconnect()

    async def ready(self) -> int:
        return len((await self.client.info())["workers"])

    async def submit(self, count: int) -> list[Any]:
        jobs = [await self.client.enqueue("noop") for _ in range(count)]
        return [job.key for job in jobs if job is not None]

    async def done(self, job: Any) -> bool:
        return (await self.pending([job])) == []

    async def pending(self, jobs: list[Any]) -> list[Any]:
        left = []
        for key, job in zip(jobs, await self.client.jobs(jobs), strict=True):
            status = job.status if job else None
            if status in (SaqStatus.FAILED, SaqStatus.ABORTED):
                raise failed(key, status)
            if status != SaqStatus.COMPLETE:
                left.append(key)
        return left


class Taskiq(System):
    def command(self, worker: int) -> list[str]:
        return [
            *(sys.executable, "-m", "taskiq", "worker", "taskiq_app:broker", "--workers", "1"),
            *("--max-async-tasks", str(CONCURRENCY), "--log-level", "WARNING"),
        ]

    async def open(self) -> None:
        self.backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(self.url)
        broker = RedisStreamBroker(self.url, queue_name=self.queue)
        self.broker = broker.with_result_backend(self.backend)
        # Creates the stream's consumer group, which keeps what is sent before the
        # workers read.
        await self.broker.startup()
        self.seen: set[object] = set()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def ready(self) -> int:
        # taskiq keeps no registry of workers: a job that answers with its worker's
        # number, until both have answered.
        kicker: AsyncKicker[[], str] = AsyncKicker("whoami", self.broker, {})
        task = await kicker.kiq()
        with contextlib.suppress(TaskiqResultTimeoutError):
            self.seen.add((await task.wait_result(timeout=1)).return_value)
        return len(self.seen)

    async def submit(self, count: int) -> list[Any]:
        kicker: AsyncKicker[[], None] = AsyncKicker("noop", self.broker, {})
        return [(await kicker.kiq()).task_id for _ in range(count)]

    async def done(self, job: Any) -> bool:
        return await self.backend.is_result_ready(job)

    async def state(self, job: str) -> str | None:
        try:
            result = await self.backend.get_result(job)
        except ResultIsMissingError:
            return job
        if result.is_err:
            raise failed(job, result.error)
        return None

    async def pending(self, jobs: list[Any]) -> list[Any]:
        return await in_chunks(self.state, jobs)


class Dramatiq(System):
    READY = b"Worker process is ready for action."

    def command(self, worker: int) -> list[str]:
        return [
            *(sys.executable, "-m", "dramatiq", "dramatiq_app"),
            *("--processes", "1", "--threads", str(CONCURRENCY)),
        ]

    async def open(self) -> None:
        # Dramatiq's constructors and get_result carry no annotations.
        self.broker = RedisBroker(url=self.url)  # type: ignore[no-untyped-call]
        self.backend = RedisBackend(url=self.url)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        self.broker.close()

    async def ready(self) -> int:
        # Dramatiq keeps no registry of workers: each worker process says so in its log.
        return sum(self.READY in log.read_bytes()[start:] for log, start in self.logs)

    async def submit(self, count: int) -> list[Any]:
        # Sync library, called straight from the loop: nothing else runs on it.
        return [
            self.broker.enqueue(
                dramatiq.Message(
                    queue_name=self.queue, actor_name="noop", args=(), kwargs={}, options={}
                )
            )
            for _ in range(count)
        ]

    async def done(self, job: Any) -> bool:
        return (await self.pending([job])) == []

    async def pending(self, jobs: list[Any]) -> list[Any]:
        left = []
        for message in jobs:
            try:
                # A job that raised raises here, as ResultFailure.
                self.backend.get_result(message)  # type: ignore[no-untyped-call]
            except ResultMissing:
                left.append(message)
        return left


class CeleryPeer(System):
    def command(self, worker: int) -> list[str]:
        return [
            *(sys.executable, "-m", "celery", "-A", "celery_app", "worker"),
            *("--pool", "prefork", "--concurrency", str(CELERY_CHILDREN)),
            *("--hostname", f"peer{worker}@%h", "--loglevel", "WARNING"),
        ]

    async def open(self) -> None:
        self.app = Celery("peers", broker=self.url, backend=self.url)
        self.app.conf.broker_connection_retry_on_startup = True

    async def close(self) -> None:
        self.app.close()

    async def ready(self) -> int:
        return len(self.app.control.ping(timeout=0.5))

    async def submit(self, count: int) -> list[Any]:
        return [self.app.send_task("noop", queue=self.queue) for _ in range(count)]

    async def done(self, job: Any) -> bool:
        ready: bool = job.ready()
        return ready

    async def pending(self, jobs: list[Any]) -> list[Any]:
        # Celery's own wait for many results: MGET of those not ready, every interval;
        # raises if one failed.
        ResultSet(jobs, app=self.app).join_native(timeout=READY_SECONDS, interval=POLL_SECONDS)
        return []


class Arq(System):
    def command(self, worker: int) -> list[str]:
        return [
            *(sys.executable, "-m", "arq", "arq_app.WorkerSettings"),
            *("--custom-log-dict", "arq_app.LOGGING"),
        ]

    async def open(self) -> None:
        settings = RedisSettings.from_dsn(self.url)
        self.pool: ArqRedis = await create_pool(settings, default_queue_name=self.queue)

    async def close(self) -> None:
        await self.pool.aclose()

    async def ready(self) -> int:
        # The key each worker's health check writes, as `arq --check` reads it.
        keys = [f"{self.queue}:health-check:{worker}" for worker in range(WORKERS)]
        count: int = await self.pool.exists(*keys)
        return count

    async def submit(self, count: int) -> list[Any]:
        jobs = [await self.pool.enqueue_job("noop") for _ in range(count)]
        return [job.job_id for job in jobs if job is not None]

    async def done(self, job: Any) -> bool:
        return await ArqJob(job, self.pool).status() == ArqStatus.complete

    async def state(self, job: str) -> str | None:
        result = await ArqJob(job, self.pool).result_info()
        if result is None:
            return job
        if not result.success:
            raise failed(job, result.result)
        return None

    async def pending(self, jobs: list[Any]) -> list[Any]:
        # Not all_job_results(): it reads every result at once, a connection each.
        return await in_chunks(self.state, jobs)


# A listed procrastinate job's status is the enum's value.
FAILED = {ProcrastinateStatus.FAILED.value, ProcrastinateStatus.ABORTED.value}


class Procrastinate(System):
    at_a_time = 1

    def command(self, worker: int) -> list[str]:
        return [
            *(sys.executable, "-m", "procrastinate", "--app", "procrastinate_app.app"),
            *("--log-level", "warning", "worker", "--concurrency", str(CONCURRENCY)),
        ]

    async def open(self) -> None:
        self.app = App(connector=PsycopgConnector(conninfo=self.url))
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        self.deferrer = self.app.configure_task("noop", queue=self.queue)

    async def close(self) -> None:
        await self.app.close_async()

    async def ready(self) -> int:
        # Each running worker has a row in procrastinate's workers table, with its
        # heartbeat; procrastinate has no call that lists them.
        row = await self.app.connector.execute_query_one_async(
            "SELECT count(*) AS workers FROM procrastinate_workers"
        )
        workers: int = row["workers"]
        return workers

    async def submit(self, count: int) -> list[Any]:
        if self.at_a_time == 1:
            return [await self.deferrer.defer_async() for _ in range(count)]
        jobs: list[Any] = []
        for start in range(0, count, self.at_a_time):
            size = min(self.at_a_time, count - start)
            jobs += await self.deferrer.batch_defer_async(*({} for _ in range(size)))
        return jobs

    async def done(self, job: Any) -> bool:
        status = await self.app.job_manager.get_job_status_async(job)
        return status == ProcrastinateStatus.SUCCEEDED

    async def pending(self, jobs: list[Any]) -> list[Any]:
        statuses = {
            job.id: job.status
            for job in await self.app.job_manager.list_jobs_async(queue=self.queue)
        }
        for job in jobs:
            if statuses.get(job) in FAILED:
                raise failed(job, statuses[job])
        return [job for job in jobs if statuses.get(job) != ProcrastinateStatus.SUCCEEDED.value]


class ProcrastinateBatch(Procrastinate):
    at_a_time = BATCH


SYSTEMS: dict[str, Callable[[str, str, list[tuple[Path, int]]], System]] = {
    peer.name: system
    for peer, system in zip(
        PEERS,
        [Saq, Taskiq, Dramatiq, CeleryPeer, Arq, Saq, Procrastinate, ProcrastinateBatch],
        strict=True,
    )
}


Workers = list[subprocess.Popen[bytes] | Forked]


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, system: System, workers: Workers
) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not await condition():
        exited = any(worker.poll() is not None for worker in workers)
        if exited or time.monotonic() > deadline:
            tails = "\n".join(log.read_text()[start:][-2000:] for log, start in system.logs)
            problem = "a worker exited" if exited else "timed out"
            raise RuntimeError(f"{problem} waiting for {what}:\n{tails}")
        await asyncio.sleep(POLL_SECONDS)


async def finish(system: System, jobs: list[Any], workers: Workers) -> None:
    """Wait on the last job's status (cheap), then until every job reads done."""

    async def last_done() -> bool:
        return await system.done(jobs[-1])

    left = jobs

    async def all_done() -> bool:
        nonlocal left
        left = await system.pending(left)
        return not left

    await until(last_done, "the last job", system, workers)
    await until(all_done, "every job", system, workers)


def stop(workers: Workers) -> None:
    """SIGTERM to every worker at once; one still running after STOP_SECONDS is killed
    (a SAQ worker on PostgreSQL sometimes never exits: a job fetch stuck cancelling)."""
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def timed(system: System, jobs: int, logs: list[Path]) -> dict[str, float]:
    await system.open()
    try:
        with ExitStack() as stack:
            workers = [
                stack.enter_context(
                    processes(PEERS_DIR, system.command(worker), 1, log, system.environment(worker))
                )[0]
                for worker, log in enumerate(logs)
            ]
            stack.callback(stop, workers)

            async def ready() -> bool:
                return await system.ready() >= WORKERS

            await until(ready, f"{WORKERS} workers", system, workers)
            # A first job through the whole path, outside the clock.
            await finish(system, await system.submit(1), workers)
            started = time.perf_counter()
            await finish(system, await system.submit(jobs), workers)
            seconds = time.perf_counter() - started
    finally:
        await system.close()
    return {"jobs_per_second": jobs / seconds}


@contextmanager
def clean(peer: Peer, redis_url: str, postgres_url: str) -> Iterator[str]:
    """The URL of an empty place on the peer's server."""
    if peer.server == "redis":
        with Redis.from_url(redis_url) as redis:
            redis.flushdb()
        yield redis_url
        return
    name = f"peer_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def measure(
    peer: Peer, jobs: int, redis_url: str, postgres_url: str, work: Path
) -> dict[str, float]:
    """Start the peer's 2 workers (logs under `work`), wait until ready, run `jobs` jobs,
    stop the workers; returns {"jobs_per_second": ...}."""
    work.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in peer.name.lower())
    logs = [work / f"{slug}-worker{worker}.log" for worker in range(WORKERS)]
    offsets = [(log, log.stat().st_size if log.exists() else 0) for log in logs]
    with clean(peer, redis_url, postgres_url) as url:
        system = SYSTEMS[peer.name](url, f"peer-{uuid.uuid4().hex[:12]}", offsets)
        return asyncio.run(timed(system, jobs, logs))
