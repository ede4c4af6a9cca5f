"""The event loop of a worker process, in a thread of its own, with the job layer on it:
one database engine, the shared runner (with the executor's heartbeat) and the poller,
for the process's life. The worker's own thread hands it one job at a time (run())."""

import asyncio
import concurrent.futures
import logging
import os
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from {{ cookiecutter.project_slug }}.db import close, create_sessionmaker, database_engine
from {{ cookiecutter.project_slug }}.jobs.backend import Backend
from {{ cookiecutter.project_slug }}.jobs.poller import Poller
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.jobs.runner import STOP_SECONDS as RUNNER_STOP_SECONDS
from {{ cookiecutter.project_slug }}.jobs.runner import Ended, Runner
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

# A stop takes at most this long past the grace: the runner's bound, then the worker's
# own teardown.
STOP_SECONDS = RUNNER_STOP_SECONDS + 2

T = TypeVar("T")


class JobLoop:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)
        self._ready = threading.Event()
        self._runner_stop: concurrent.futures.Future[None] | None = None

    def _run(self) -> None:
        # asyncio's Runner, as asyncio.run: once stopped, what is left on the loop is
        # cancelled and its default executor shut down, so no thread outlives it.
        with asyncio.Runner() as runner:
            self.loop = runner.get_loop()
            self._stopped = asyncio.Event()
            self._ready.set()
            runner.run(self._stopped.wait())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        self.call(self._start())

    async def _start(self) -> None:
        settings = self._settings
        self._engine = database_engine(settings)
        sessionmaker = create_sessionmaker(self._engine)
        self.backend = Backend(settings, sessionmaker)
        self.runner = Runner(sessionmaker, settings, self.backend.name)
        self._poller = Poller(
            sessionmaker, self.backend, settings, self.runner.steady, schedules(settings)
        )
        await self.backend.start()
        await self.runner.start()
        self._polling = await self._poller.start()

    def run(self, job_id: uuid.UUID) -> Ended | None:
        """One attempt of the job, from the worker's thread: how it ended, or None if the
        job table did not give it to this process. Raises CancelledError when a stop cut
        it short (the job is queued again)."""
        attempt = asyncio.run_coroutine_threadsafe(self.runner.run(job_id), self.loop)
        try:
            return attempt.result()
        except BaseException:
            attempt.cancel()  # the worker's own time limit (a backstop), or an interrupt
            raise

    @property
    def stopping(self) -> bool:
        return self._runner_stop is not None

    def stop_running(self, grace_seconds: float) -> None:
        """Give the running job the grace, then stop it and queue it again."""
        if self._runner_stop is None:
            self._runner_stop = asyncio.run_coroutine_threadsafe(
                self.runner.stop(grace_seconds), self.loop
            )

    def stop(self, grace_seconds: float) -> None:
        self.stop_running(grace_seconds)
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join()

    async def _stop(self) -> None:
        self._poller.stop()
        assert self._runner_stop is not None
        await asyncio.wrap_future(self._runner_stop)
        await self._poller.stopped(self._polling)
        await close(self._engine)
        await self.backend.stop(grace_seconds=0)


def exit_after(seconds: float) -> None:
    """The stop's one bound, in a thread started with the stop. The worker's teardown
    talks to Redis: with Redis unreachable, it is cut short here."""
    threading.Event().wait(seconds)  # not time.sleep: libfaketime makes it fail
    logger.error("stopping took over %d s past the grace (is Redis reachable?)", STOP_SECONDS)
    logging.shutdown()
    os._exit(1)
