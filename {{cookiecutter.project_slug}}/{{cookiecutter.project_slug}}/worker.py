"""The RQ worker: `python -m {{ cookiecutter.project_slug }}.worker` runs queued jobs.

RQ hands the worker job ids and the shared runner does the rest, on one event loop
that lives as long as the process, with one database engine and one Redis client.
RQ's default worker forks a process for every job, which would pay for a new loop,
engine and connections each time; this one runs jobs in its own process instead.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

from rq import SimpleWorker

from {{ cookiecutter.project_slug }} import (
    metrics,
    tasks,  # noqa: F401  # registers every task
)
from {{ cookiecutter.project_slug }}.db import create_sessionmaker, database_engine
from {{ cookiecutter.project_slug }}.jobs.backend import WORKER_HEARTBEAT_SECONDS, Backend
from {{ cookiecutter.project_slug }}.jobs.poller import Poller
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.jobs.runner import Runner
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Executor:
    """The worker's async side: an event loop in a thread, running the shared runner,
    its lease keeper and the poller, which sends due and recovered jobs to Redis."""

    def __init__(self, settings: Settings) -> None:
        self._engine = database_engine(settings)
        sessionmaker = create_sessionmaker(self._engine)
        self.backend = Backend(settings, sessionmaker)
        self.runner = Runner(sessionmaker, settings, self.backend.name)
        self._poller = Poller(
            sessionmaker, self.backend, settings, self.runner.steady, schedules(settings)
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="jobs", daemon=True)
        self._services: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def start(self, worker: SimpleWorker) -> None:
        self._thread.start()
        self.call(self.backend.start())
        self._services = self.call(self._start_services(worker))

    async def _start_services(self, worker: SimpleWorker) -> list[asyncio.Task[None]]:
        await self.runner.start()
        return [
            await self._poller.start(),
            asyncio.create_task(self._keep_heartbeat(worker)),
        ]

    async def _keep_heartbeat(self, worker: SimpleWorker) -> None:
        # RQ's worker heartbeats only between jobs when it runs them in its own process,
        # as here; RQ's maintenance takes a worker silent for long for dead, so this
        # task sends them while a job runs.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), WORKER_HEARTBEAT_SECONDS)
            if self._stopping.is_set():
                return
            try:
                await asyncio.to_thread(worker.heartbeat)
            except Exception:
                logger.warning("sending the worker's heartbeat failed; trying again", exc_info=True)

    def run(self, job_id: uuid.UUID) -> None:
        future = asyncio.run_coroutine_threadsafe(self.runner.run(job_id), self.loop)
        # Cancelled means stopped by shutdown: the runner has queued the job again.
        with contextlib.suppress(concurrent.futures.CancelledError):
            future.result()

    def stop_running_jobs(self, grace_seconds: float) -> None:
        """Give the running job the grace, then queue it again; returns at once."""
        asyncio.run_coroutine_threadsafe(self.runner.stop(grace_seconds), self.loop)

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.backend.redis.close()

    async def _stop(self) -> None:
        self._stopping.set()
        self._poller.stop()
        await self.runner.stop(grace_seconds=0)
        await asyncio.gather(*self._services)
        await self._engine.dispose()


_executor: Executor | None = None


def run_job(job_id: str) -> None:
    """What RQ executes for every job."""
    if _executor is None:
        raise RuntimeError(f"jobs run in `python -m {__name__}`, not in `rq worker`")
    _executor.run(uuid.UUID(job_id))


class Worker(SimpleWorker):
    """RQ's non-forking worker, with a grace period on shutdown."""

    grace_seconds = 30.0

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # Warm shutdown: the current job gets the grace period, then it is cancelled and
        # queued again. A second signal stops at once; the job is queued again then too.
        if _executor is not None:
            _executor.stop_running_jobs(self.grace_seconds)
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # RQ is untyped here


def main() -> None:
    global _executor
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    _executor = Executor(settings)
    worker = Worker([_executor.backend.queue], connection=_executor.backend.redis)
    worker.grace_seconds = settings.job_shutdown_grace_seconds
    _executor.start(worker)
    try:
        worker.work(logging_level=settings.log_level)
    finally:
        _executor.stop()
        _executor = None


if __name__ == "__main__":
    # Run main() of the module RQ imports by name, so run_job finds the executor there
    # and not in this `__main__` copy.
    from {{ cookiecutter.project_slug }} import worker

    worker.main()
