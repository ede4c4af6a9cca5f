"""Runs jobs inside the web process on an aiojobs Scheduler with bounded concurrency.

Nothing is lost on a crash: the job table holds every job, and the poller picks up
what a dead process left behind once its heartbeat is older than the lease. Memory is
bounded too: past `JOB_PENDING_LIMIT` jobs waiting for a slot, new ones wait queued in
the table, and the poller hands them over as running jobs finish. Submitting is refused
only past `JOB_BACKLOG_LIMIT` due jobs in the table.
"""

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence

import aiojobs

from {{ cookiecutter.project_slug }}.db import SessionMaker, database_unavailable
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.base import JobInserted
from {{ cookiecutter.project_slug }}.jobs.errors import JobsUnavailable
from {{ cookiecutter.project_slug }}.jobs.poller import Poller
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.jobs.runner import Runner
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)


class Backend:
    name = "aiojobs"

    def __init__(self, settings: Settings, sessionmaker: SessionMaker) -> None:
        self.runner = Runner(sessionmaker, settings, self.name)
        self._poller = Poller(sessionmaker, self, settings, self.runner.steady, schedules(settings))
        self._sessionmaker = sessionmaker
        self._concurrency = settings.job_concurrency
        self._pending_limit = settings.job_pending_limit
        self._backlog_limit = settings.job_backlog_limit
        self._poll_seconds = settings.job_poll_seconds
        self._scheduler: aiojobs.Scheduler | None = None
        self._jobs: dict[uuid.UUID, aiojobs.Job[None]] = {}
        # The poller is not a job: it must not take a job's slot.
        self._poller_task: asyncio.Task[None] | None = None
        self._accepting = False
        # Due jobs in the table, counted while the pending queue overflows (else 0).
        self._overflowing = False
        self._backlog = 0
        self._counting: asyncio.Task[None] | None = None

    @property
    def scheduler(self) -> aiojobs.Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the job backend is not started")
        return self._scheduler

    async def start(self) -> None:
        # Created here, not in __init__: a Scheduler binds to the running event loop.
        self._scheduler = aiojobs.Scheduler(
            limit=self._concurrency, pending_limit=self._pending_limit
        )
        await self.runner.start()
        self._poller_task = await self._poller.start()
        self._accepting = True
        logger.info(
            "job backend %s started (concurrency %d, pending limit %d)",
            self.name,
            self._concurrency,
            self._pending_limit,
        )

    def check_accepting(self) -> None:
        if not self._accepting:
            raise JobsUnavailable("the service is shutting down")
        if self._backlog >= self._backlog_limit:
            raise JobsUnavailable(f"{self._backlog} jobs are due and waiting already")

    def in_hand(self) -> Collection[uuid.UUID]:
        return self._jobs.keys()

    def free_slots(self) -> int:
        # The poller takes only what can start at once: a job waiting in this process's
        # memory would look due to every other process's poller too.
        return max(0, self._concurrency - len(self._jobs))

    async def dispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        for job_id in job_ids:
            if job_id in self._jobs:
                continue
            # Scheduler.spawn waits while the pending queue is full; a request must not
            # hang on it, nor a poll that ends during shutdown spawn into a closed
            # scheduler. The job stays queued in the table and is picked up later.
            if not self._accepting:
                return
            if self.scheduler.pending_count >= self._pending_limit:
                self._overflow()
                return
            self._jobs[job_id] = await self.scheduler.spawn(self._run(job_id))

    async def start_on_insert(self, job: Job) -> JobInserted | None:
        """Start the new `job` here as it is inserted (see Runner.claim_on_insert), if
        a slot is free: one waiting in memory would hold a claim it does not use."""
        if not self._accepting or len(self._jobs) >= self._concurrency:
            return None
        inserted = self.runner.claim_on_insert(job)
        if inserted is not None:
            self._jobs[job.id] = await self.scheduler.spawn(self._run(job.id, inserted))
        return inserted

    def _overflow(self) -> None:
        self._overflowing = True
        if self._counting is None or self._counting.done():
            self._counting = asyncio.create_task(self._count_backlog())

    async def _count_backlog(self) -> None:
        """While jobs overflow into the table, count them there once per poll interval."""
        while self._overflowing and self._accepting:
            try:
                async with self._sessionmaker() as session:
                    self._backlog = await reads.backlog(session)
            except Exception as error:
                if not database_unavailable(error):
                    raise
                # Submitting fails on its own then: the count can wait.
            await asyncio.sleep(self._poll_seconds)
        self._backlog = 0

    async def _run(self, job_id: uuid.UUID, inserted: JobInserted | None = None) -> None:
        try:
            await self.runner.run(job_id, inserted)
        finally:
            self._jobs.pop(job_id, None)
            # Nothing left waiting in memory and half the slots free: time for the jobs
            # that wait in the table, rather than at the next poll.
            if (self._overflowing or self._poller.left_some) and (
                len(self._jobs) <= self._concurrency // 2
            ):
                self._overflowing = False
                self._poller.wake()

    def cancel(self, job_id: uuid.UUID) -> None:
        self.runner.cancel(job_id)

    async def stop(self, grace_seconds: float) -> None:
        """Take no new jobs, let running ones finish within the grace, requeue the rest."""
        self._accepting = False
        self._poller.stop()
        # Jobs still waiting for a slot never started: they stay queued in the table.
        for job in list(self._jobs.values()):
            if job.pending:
                await job.close()
        await self.runner.stop(grace_seconds)
        if self._counting is not None:
            self._counting.cancel()
        await self.scheduler.close()
        self._jobs.clear()
        if self._poller_task is not None:
            await self._poller.stopped(self._poller_task)
        logger.info("job backend %s stopped", self.name)
