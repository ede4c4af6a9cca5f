"""Runs jobs as asyncio tasks inside the web process.

Nothing is lost on a crash: the job table holds every job, and the poller picks up
what a dead process left behind once its heartbeat is older than the lease.
"""

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.base import JobInserted
from {{ cookiecutter.project_slug }}.jobs.errors import JobsUnavailable
from {{ cookiecutter.project_slug }}.jobs.poller import Poller
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.jobs.runner import Runner
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

# The poller tops the jobs in hand up to this many; requests are not held to it.
POLL_BATCH = 100


class Backend:
    name = "create_task"

    def __init__(self, settings: Settings, sessionmaker: SessionMaker) -> None:
        self.runner = Runner(sessionmaker, settings, self.name)
        self._poller = Poller(sessionmaker, self, settings, self.runner.steady, schedules(settings))
        # The event loop keeps only weak references to tasks: without these a running
        # job could be garbage-collected mid-flight.
        self._jobs: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._poller_task: asyncio.Task[None] | None = None
        self._accepting = False

    async def start(self) -> None:
        await self.runner.start()
        self._poller_task = await self._poller.start()
        self._accepting = True
        logger.info("job backend %s started", self.name)

    def check_accepting(self) -> None:
        if not self._accepting:
            raise JobsUnavailable("the service is shutting down")

    def in_hand(self) -> Collection[uuid.UUID]:
        return self._jobs.keys()

    def free_slots(self) -> int:
        return max(0, POLL_BATCH - len(self._jobs))

    async def dispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        for job_id in job_ids:
            if job_id not in self._jobs:
                self._spawn(job_id)

    async def start_on_insert(self, job: Job) -> JobInserted | None:
        """Start the new `job` here as it is inserted (see Runner.claim_on_insert)."""
        inserted = self.runner.claim_on_insert(job)
        if inserted is not None:
            self._spawn(job.id, inserted)
        return inserted

    def _spawn(self, job_id: uuid.UUID, inserted: JobInserted | None = None) -> None:
        task = asyncio.create_task(self.runner.run(job_id, inserted))
        self._jobs[job_id] = task
        task.add_done_callback(lambda _: self._done(job_id))

    def _done(self, job_id: uuid.UUID) -> None:
        self._jobs.pop(job_id, None)
        # Room for half a batch, and the table held more than the last poll took: a
        # backlog (after a restart, say) drains as fast as jobs finish, not a batch a poll.
        if self._poller.left_some and len(self._jobs) <= POLL_BATCH // 2:
            self._poller.wake()

    def cancel(self, job_id: uuid.UUID) -> None:
        self.runner.cancel(job_id)

    async def stop(self, grace_seconds: float) -> None:
        """Take no new jobs, let running ones finish within the grace, requeue the rest."""
        self._accepting = False
        self._poller.stop()
        await self.runner.stop(grace_seconds)
        # Tasks that had not started their job return at once: it stays queued.
        await asyncio.gather(*self._jobs.values(), return_exceptions=True)
        if self._poller_task is not None:
            await self._poller.stopped(self._poller_task)
        logger.info("job backend %s stopped", self.name)
