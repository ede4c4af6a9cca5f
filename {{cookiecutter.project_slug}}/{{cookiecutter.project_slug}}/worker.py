"""The RQ worker: `python -m {{ cookiecutter.project_slug }}.worker` runs queued jobs.

It reads RQ's queue itself rather than through RQ's `Worker`, which runs one job at a
time and makes a dozen Redis round trips for each. This one takes up to
`JOB_CONCURRENCY` ids per fetch and runs them at once on one event loop with the shared
runner, so jobs that start or finish together share their claim's and their result's
transaction. It takes ids as RQ's own worker does, onto RQ's intermediate list, so one
that dies holding some leaves them where the poller looks. No job needs a process of its
own: the runner enforces timeouts. `rq info` lists the worker as RQ's own.
"""

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rq import Worker as RQWorker
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from {{ cookiecutter.project_slug }} import (
    metrics,
    tasks,  # noqa: F401  # registers every task
)
from {{ cookiecutter.project_slug }}.db import Outage, close, create_sessionmaker, database_engine
from {{ cookiecutter.project_slug }}.jobs.backend import (
    REDIS_TIMEOUT_SECONDS,
    WORKER_HEARTBEAT_SECONDS,
    Backend,
)
from {{ cookiecutter.project_slug }}.jobs.batching import Batcher
from {{ cookiecutter.project_slug }}.jobs.poller import Poller
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.jobs.runner import STOP_SECONDS as RUNNER_STOP_SECONDS
from {{ cookiecutter.project_slug }}.jobs.runner import Runner
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# How long a fetch waits for an id to arrive: also how soon a stop ends the fetching.
FETCH_WAIT_SECONDS = 1
# How long a stop may take past the grace: the runner's stop, then leaving Redis and the
# database. With either unreachable, what is left undone runs again after the lease.
STOP_SECONDS = RUNNER_STOP_SECONDS + 2


class Worker:
    def __init__(self, settings: Settings) -> None:
        self._engine = database_engine(settings)
        sessionmaker = create_sessionmaker(self._engine)
        self.backend = Backend(settings, sessionmaker)
        self.runner = Runner(sessionmaker, settings, self.backend.name)
        self._poller = Poller(
            sessionmaker, self.backend, settings, self.runner.steady, schedules(settings)
        )
        queue = self.backend.queue
        self._queue_key, self._taken_key = queue.key, queue.intermediate_queue_key
        # Its blocking fetch waits FETCH_WAIT_SECONDS, well within the socket's timeout.
        self._redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        # Only RQ's record of the worker, for `rq info` and rq-dashboard.
        self.listing = RQWorker([queue], connection=self.backend.redis, serializer=JSONSerializer)
        # RQ raises its connection's socket timeout above its blocking dequeue's (over 400 s),
        # which this worker does not use: a lost Redis would hold a stop that long. Its
        # connections made so far keep theirs, so they go.
        pool = self.backend.redis.connection_pool
        pool.connection_kwargs["socket_timeout"] = REDIS_TIMEOUT_SECONDS
        pool.reset()
        self._concurrency = settings.job_concurrency
        self._grace_seconds = settings.job_shutdown_grace_seconds
        self._running: set[asyncio.Task[None]] = set()
        # Finished ids leave Redis together, in one round trip per batch.
        self._forget = Batcher(self._forget_many)
        self._outage = Outage(logger, "taking jobs", "Redis")
        self._stopping = asyncio.Event()
        self._stop_at = 0.0  # the loop's time of the first signal
        self._hurry = asyncio.Event()

    async def run(self) -> None:
        """Take and run jobs until SIGTERM or SIGINT; then stop as the backends do."""
        await self.backend.start()
        await self.runner.start()
        poller = await self._poller.start()
        await asyncio.to_thread(self.listing.register_birth)
        listed = asyncio.create_task(self._keep_listed())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        logger.info(
            "worker %s taking jobs from queue %s, %d at a time",
            self.listing.name,
            self.backend.queue.name,
            self._concurrency,
        )
        try:
            await self._take_jobs()
            await self._finish_running()
        finally:
            self._poller.stop()
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await self._leave(poller, listed)
            except TimeoutError:
                logger.error(
                    "stopping took over %g s past the grace (are Redis and the database "
                    "reachable?); what this worker held runs again once its lease runs out",
                    STOP_SECONDS,
                )
                for task in (*self._running, poller, listed):
                    task.cancel()

    async def _leave(self, poller: asyncio.Task[None], listed: asyncio.Task[None]) -> None:
        # RQ's record goes beside the runner's stop: neither waits on the other's server.
        await asyncio.gather(self.runner.stop(grace_seconds=0), self._leave_rq_listing())
        await asyncio.gather(*self._running, return_exceptions=True)
        await self._forget.drained()
        await asyncio.gather(poller, listed)
        await close(self._engine)
        await self._redis.aclose()
        await self.backend.stop(grace_seconds=0)

    async def _leave_rq_listing(self) -> None:
        try:
            await asyncio.to_thread(self.listing.register_death)
        except (RedisError, OSError) as error:
            logger.warning("removing the worker from RQ's list failed: %s", error)

    def _on_signal(self) -> None:
        # The first signal gives running jobs the grace; a second one ends it at once.
        # Either way, jobs still running are cancelled and queued again.
        if self._stopping.is_set():
            logger.warning("stopping at once: running jobs are queued again")
            self._hurry.set()
        else:
            logger.info("stopping: running jobs get %g s to finish", self._grace_seconds)
            self._stop_at = asyncio.get_running_loop().time()
            self._stopping.set()

    async def _take_jobs(self) -> None:
        stopping = asyncio.create_task(self._stopping.wait())
        while not self._stopping.is_set():
            free = self._concurrency - len(self._running)
            if free <= 0:
                await asyncio.wait({*self._running, stopping}, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                job_ids = await self._fetch(free)
            except (RedisError, OSError) as error:
                self._outage.failed(error)
                await asyncio.wait({stopping}, timeout=FETCH_WAIT_SECONDS)
                continue
            self._outage.ended()
            if self._stopping.is_set():
                # Taken as the stop came: not started now, so a poller sends them again.
                if job_ids:
                    await self._forget_many(job_ids)
                return
            for job_id in job_ids:
                task = asyncio.create_task(self._run(job_id))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _fetch(self, count: int) -> list[str]:
        """Up to `count` ids, moved onto the intermediate list; waits for the first."""
        # A fetch from a Redis that stopped answering ends soon, and with it a stop's wait.
        async with asyncio.timeout(FETCH_WAIT_SECONDS + 1):
            return await self._fetch_now(count)

    async def _fetch_now(self, count: int) -> list[str]:
        first = await self._redis.blmove(self._queue_key, self._taken_key, FETCH_WAIT_SECONDS)
        if first is None:
            return []
        taken = [first]
        if count > 1:
            async with self._redis.pipeline(transaction=False) as pipe:
                for _ in range(count - 1):
                    pipe.lmove(self._queue_key, self._taken_key)
                taken += [job_id for job_id in await pipe.execute() if job_id is not None]
        return [str(job_id) for job_id in taken]

    async def _run(self, job_id: str) -> None:
        try:
            await self.runner.run(uuid.UUID(job_id))
        finally:
            # Whatever the outcome: a job the table queues again, a poller sends again.
            await self._forget.submit(job_id)

    async def _forget_many(self, job_ids: Sequence[str]) -> list[None]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.lrem(self._taken_key, 1, job_id)
                pipe.delete(*(RQJob.key_for(job_id) for job_id in job_ids))
                await pipe.execute()
        except (RedisError, OSError) as error:
            # Left on the intermediate list, they are the poller's once a lease is over.
            logger.warning("could not clear %d finished jobs from Redis: %s", len(job_ids), error)
        return [None] * len(job_ids)

    async def _finish_running(self) -> None:
        """Wait for the running jobs within the grace, or until a second signal."""
        loop = asyncio.get_running_loop()
        deadline = self._stop_at + self._grace_seconds
        hurry = asyncio.create_task(self._hurry.wait())
        while self._running and not hurry.done() and (left := deadline - loop.time()) > 0:
            await asyncio.wait(
                {*self._running, hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
        hurry.cancel()

    async def _keep_listed(self) -> None:
        # RQ's maintenance takes a worker whose heartbeat stops for dead.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), WORKER_HEARTBEAT_SECONDS)
            if self._stopping.is_set():
                return
            try:
                await asyncio.to_thread(self.listing.heartbeat)
            except (RedisError, OSError) as error:
                logger.warning("sending the worker's heartbeat to Redis failed: %s", error)


def run_job(job_id: str) -> None:
    """What RQ's record of every job names; only this module's worker runs them."""
    raise RuntimeError(f"jobs run in `python -m {__name__}`, not in `rq worker`")


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    asyncio.run(Worker(settings).run())


if __name__ == "__main__":
    main()
