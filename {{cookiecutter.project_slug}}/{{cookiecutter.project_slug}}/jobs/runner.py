"""The one runner that executes every job.

The backend only decides where `Runner.run(job_id)` is awaited: {% if cookiecutter.job_backend == "create_task" %}in an asyncio task{% elif cookiecutter.job_backend == "aiojobs" %}in an aiojobs job{% else %}in an RQ worker{% endif %}.
Claiming, leases, timeouts, retries with backoff, cancellation and the recording of
results are all here, once.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from structlog.contextvars import bound_contextvars, clear_contextvars

from {{ cookiecutter.project_slug }} import metrics
from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import store
from {{ cookiecutter.project_slug }}.jobs.batching import Batcher
from {{ cookiecutter.project_slug }}.jobs.registry import (
    TASKS,
    JobContext,
    PermanentJobError,
    ProgressReporter,
    Task,
)
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_SECONDS = 1.0


class UnknownTask(Exception):
    """The job names a task this process has not registered."""


def retry_delay(task: Task, attempt: int) -> float:
    """Exponential backoff with jitter: retries of many failed jobs spread out."""
    ceiling = min(task.max_backoff_seconds, task.backoff_seconds * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class Runner:
    def __init__(self, sessionmaker: SessionMaker, settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._lease_seconds = settings.job_lease_seconds
        self._owner = f"{socket.gethostname()[:60]}:{os.getpid()}"
        self._claim_numbers = itertools.count(1)
        # Jobs started or finished at the same moment share their claim's transaction,
        # and their results' transaction: under load, two commits per batch, not per job.
        self._claims = Batcher(self._claim)
        self._successes = Batcher(self._record_successes)
        self._claiming: set[asyncio.Task[Any]] = set()
        self._running: dict[uuid.UUID, tuple[str, asyncio.Task[Any]]] = {}
        self._stopping = False
        self._stopped = asyncio.Event()

    def cancel(self, job_id: uuid.UUID) -> None:
        """Stop the job if this process runs it (it was cancelled, or lost its lease)."""
        if job_id in self._running:
            self._running[job_id][1].cancel()

    async def run(self, job_id: uuid.UUID) -> None:
        """Run one attempt of the job, if it is due and nobody else has it."""
        if self._stopping:
            return
        current = asyncio.current_task()
        assert current is not None  # run() is always awaited inside a task
        self._claiming.add(current)
        try:
            claimed = await self._claims.submit(job_id)
        finally:
            self._claiming.discard(current)
        if claimed is None:
            return
        job, lease = claimed
        waited = (job.started_at or job.run_after) - job.run_after
        metrics.job_started(job.name, waited.total_seconds())
        self._running[job_id] = (lease, current)
        # Every line logged in the attempt names the job; not the request that started it.
        clear_contextvars()
        try:
            with bound_contextvars(job_id=str(job.id), job_name=job.name, attempt=job.attempts):
                await self._attempt(job, lease)
        finally:
            del self._running[job_id]

    async def _claim(self, job_ids: Sequence[uuid.UUID]) -> list[tuple[Job, str] | None]:
        # Each claim gets its own lease name, shared by the jobs claimed together, so a
        # stale executor of an earlier attempt can never write over a later one.
        lease = f"{self._owner}:{next(self._claim_numbers)}"
        async with self._sessionmaker() as session:
            jobs = await store.claim(session, job_ids, lease, self._lease_seconds)
            if jobs and self._stopping:
                # Claimed while shutting down: straight back to the queue.
                await store.release(session, [lease])
                jobs = []
        by_id = {job.id: job for job in jobs}
        # pop: a job dispatched twice in one batch is run once.
        return [(job, lease) if (job := by_id.pop(job_id, None)) else None for job_id in job_ids]

    async def _record_successes(self, successes: Sequence[store.Success]) -> list[bool]:
        async with self._sessionmaker() as session:
            return await store.record_successes(session, successes)

    async def stop(self, grace_seconds: float) -> None:
        """Start no more jobs; let running ones finish within the grace, then queue the
        rest again (their attempt not counted) and stop them."""
        self._stopping = True
        busy = self._claiming | {task for _, task in self._running.values()}
        if busy:
            await asyncio.wait(busy, timeout=grace_seconds)
        # Claims take milliseconds: let those in flight land (and give their job back)
        # rather than cancel them halfway through a transaction.
        if self._claiming:
            await asyncio.wait(set(self._claiming))
        if self._running:
            leases = [lease for lease, _ in self._running.values()]
            running = [task for _, task in self._running.values()]
            # One UPDATE for all of them: a shutdown should not queue a write per job.
            async with self._sessionmaker() as session:
                released = await store.release(session, leases)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            logger.warning("%d jobs outlasted the grace; queued for the next start", released)
        # A result write does not stop with the jobs cancelled while waiting for it.
        await self._successes.drained()
        self._stopped.set()

    async def _attempt(self, job: Job, lease: str) -> None:
        started = time.monotonic()
        task = TASKS.get(job.name)
        deadline = asyncio.timeout(job.timeout_seconds)
        try:
            if task is None:
                raise UnknownTask(f"no task named {job.name!r} is registered in this process")
            async with self._sessionmaker() as task_session:
                context = JobContext(
                    job_id=job.id,
                    attempt=job.attempts,
                    max_attempts=job.max_attempts,
                    session=task_session,
                    settings=self._settings,
                    _report_progress=self._progress_reporter(job.id, lease),
                )
                async with deadline:
                    result = await task.function(context, **job.arguments)
            json.dumps(result)  # refuse a result the job table cannot hold, as a failure
        except Exception as error:
            failure = error
            if deadline.expired():
                failure = TimeoutError(f"timed out after {job.timeout_seconds:g} s")
            delay = None
            retryable = not isinstance(error, PermanentJobError)
            if task is not None and retryable and job.attempts < job.max_attempts:
                delay = retry_delay(task, job.attempts)
            async with self._sessionmaker() as session:
                recorded = await store.record_failure(session, job.id, lease, failure, delay)
            if recorded:
                status = "failed" if delay is None else "retried"
                metrics.job_ended(job.name, status, time.monotonic() - started)
            logger.warning(
                "job failed on attempt %d of %d: %s: %s; %s",
                job.attempts,
                job.max_attempts,
                type(failure).__name__,
                failure,
                "no attempts left" if delay is None else f"retrying in {delay:.1f} s",
                exc_info=failure is error and retryable and not isinstance(error, UnknownTask),
            )
            return
        recorded = await self._successes.submit(store.Success(job.id, lease, result))
        if recorded:
            seconds = time.monotonic() - started
            metrics.job_ended(job.name, "succeeded", seconds)
            logger.info("job succeeded in %.3f s", seconds)

    def _progress_reporter(self, job_id: uuid.UUID, lease: str) -> ProgressReporter:
        last_write = 0.0

        async def report(fraction: float, message: str | None) -> None:
            nonlocal last_write
            now = time.monotonic()
            if fraction < 1.0 and now - last_write < PROGRESS_WRITE_INTERVAL_SECONDS:
                return
            last_write = now
            async with self._sessionmaker() as session:
                await store.record_progress(session, job_id, lease, fraction, message)

        return report

    async def keep_leases(self) -> None:
        """Renew the leases of running jobs; stop those cancelled or lost meanwhile.

        Runs until the runner has stopped. A lease lasts `lease_seconds` and is renewed
        ten times as often, so a few missed renewals do not cost a job.
        """
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._lease_seconds / 10)
            held = {job_id: lease for job_id, (lease, _) in self._running.items()}
            if not held:
                continue
            try:
                async with self._sessionmaker() as session:
                    lost = await store.renew_leases(session, held, self._lease_seconds)
            except Exception:
                logger.exception("renewing job leases failed; trying again")
                continue
            for job_id in lost:
                logger.info("job %s was cancelled or lost its lease; stopping it", job_id)
                self.cancel(job_id)
