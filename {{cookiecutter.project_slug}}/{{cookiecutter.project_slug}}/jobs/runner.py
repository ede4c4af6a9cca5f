"""The one runner that executes every job.

The backend only decides where `Runner.run(job_id)` is awaited: {% if cookiecutter.job_backend == "create_task" %}in an asyncio task{% elif cookiecutter.job_backend == "aiojobs" %}in an aiojobs job{% elif cookiecutter.job_backend == "rq" %}in an RQ worker, several at a time{% else %}in a Celery worker's child process{% endif %}.
Claiming, the executor's heartbeat, timeouts, retries with backoff, cancellation and the
recording of results are all here, once.

The process is one executor: a row in the executor table that it heartbeats in the
database's time. The jobs it runs name it; when its heartbeat stops (the process died,
or lost the database for longer than the lease), any other process's poller gives its
jobs to the queue again, and a late write from this one changes nothing.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession
from structlog.contextvars import bound_contextvars, clear_contextvars

from {{ cookiecutter.project_slug }} import {% if cookiecutter.job_backend not in ("rq", "celery") %}clock, {% endif %}metrics
from {{ cookiecutter.project_slug }}.db import Outage, SessionMaker, database_unavailable
from {{ cookiecutter.project_slug }}.jobs import executor_writes as writes
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
from {{ cookiecutter.project_slug }}.jobs.base import JobInserted
{%- endif %}
from {{ cookiecutter.project_slug }}.jobs.batching import Batcher
from {{ cookiecutter.project_slug }}.jobs.registry import (
    TASKS,
    JobContext,
    PermanentJobError,
    ProgressReporter,
    Task,
)
from {{ cookiecutter.project_slug }}.models import Executor, Job{% if cookiecutter.job_backend not in ("rq", "celery") %}, JobStatus{% endif %}
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_SECONDS = 1.0
# How long a write of a job's outcome waits before trying again while the database is
# unavailable: the job stays held by this process meanwhile.
WRITE_RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0)
WRITE_RETRY_MAX_SECONDS = 2.0

# How long an attempt's task has to stop once cancelled (its timeout, a cancel of the job,
# a shutdown) before the attempt is given up as stuck.
CANCEL_GRACE_SECONDS = 5.0
# How long a stop may take past its grace: cancelling the attempts still running, then
# giving their jobs back and leaving the executor table (milliseconds, with the database).
STOP_SECONDS = CANCEL_GRACE_SECONDS + 3
# How long a stop waits for the claims in flight to land.
CLAIM_LANDING_SECONDS = 2.0

T = TypeVar("T")
# What became of a success: recorded; recorded as a failure because the database refused
# the result; or not recorded, the job being cancelled or run elsewhere meanwhile.
Outcome = Literal["succeeded", "refused", "lost"]


class AttemptTimedOut(TimeoutError):
    """The attempt ran past its job's timeout, and stopped when cancelled."""


class AttemptStuck(PermanentJobError):
    """The attempt ran past its job's timeout and did not stop when cancelled: it runs
    on, so the job is not retried beside it."""


class UnstorableResult(PermanentJobError):
    """The task returned what the job table cannot keep as JSON (NaN, an object): the
    same task would return it again, so its job fails at once."""


class ResultRefused(Exception):
    """The database refused to store the job's result (a constraint, a trigger, a size)."""


def storable(result: Any) -> Any:
    """The result, if strict JSON can hold it: `json.dumps` writes NaN and Infinity,
    which {% if cookiecutter.database == "sqlite" %}SQLite would read back as null{% else %}PostgreSQL refuses{% endif %}."""
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise UnstorableResult(f"the result is not JSON the job table can keep: {error}") from None
    return result


def allowed_attempts(job: Job) -> int:
    """The attempt after which no retry follows: `max_attempts`, plus the attempts cut
    short by their process dying, which do not count (jobs/recovery.py)."""
    return job.max_attempts + job.lost_attempts


def retry_delay(task: Task, attempt: int) -> float:
    """Exponential backoff with jitter: retries of many failed jobs spread out."""
    ceiling = min(task.max_backoff_seconds, task.backoff_seconds * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


{%- if cookiecutter.job_backend in ("rq", "celery") %}


@dataclass(frozen=True)
class Ended:
    """How an attempt ended: succeeded (with its result), failed, or retried (with its error)."""

    status: str
    result: Any = None
    error: str | None = None
{%- endif %}


@dataclass
class _Attempt:
    task: asyncio.Task[Any]
    # The claim landed: the table says this process runs the job.
    claimed: bool = False
    # Its outcome is being written: it is no longer stopped when the job is lost.
    finishing: bool = False


class Runner:
    def __init__(self, sessionmaker: SessionMaker, settings: Settings, backend: str) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._lease_seconds = settings.job_lease_seconds
        self.executor_id = uuid.uuid4()
        # The tasks registered here: jobs of others are left to processes that know them.
        self._tasks = sorted(TASKS)
        self._backend = backend
        # Jobs started or finished at the same moment share their claim's transaction,
        # and their results' transaction: under load, two commits per batch, not per job.
        self._claims = Batcher(self._claim)
        self._successes = Batcher(self._record_successes)
        # Every job this process is claiming or running, by id: one attempt at a time.
        self._attempts: dict[uuid.UUID, _Attempt] = {}
        # The tasks of attempts given up because they did not stop when cancelled: while
        # one runs on, this process keeps its job from being run again anywhere.
        self._stuck: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self._outage = Outage(logger, "running jobs")
        self._stopping = False
        self._stopped = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        # In the executor table: jobs are claimed only then, or they would look stalled.
        self._joined = False
        # Since when the heartbeat has not missed (monotonic), or None after a miss.
        self._beating_since: float | None = None
        # When the last heartbeat that landed was sent (monotonic).
        self._beat_sent = 0.0

    async def start(self) -> None:
        """Enter this process in the executor table, and keep its heartbeat. With the
        database unavailable it starts all the same, and joins once the database is back."""
        with self._unless_unavailable("joining the executor table"):
            await self._join()
        self._heartbeat = asyncio.create_task(self._keep_heartbeat())

    async def _join(self) -> None:
        sent = time.monotonic()
        async with self._sessionmaker() as session:
            await writes.register_executor(session, self._executor_row())
        self._joined = True
        self._beating_since = self._beat_sent = sent
        logger.info("executor %s started", self.executor_id)

    def steady(self) -> bool:
        """Whether this process's heartbeat has gone unbroken for a lease: after an outage
        every executor's heartbeat is late, so none is taken for dead until then."""
        since = self._beating_since
        return since is not None and time.monotonic() - since >= self._lease_seconds

    def _executor_row(self) -> Executor:
        host = socket.gethostname()[:255]
        return Executor(
            id=self.executor_id,
            host=host,
            pid=os.getpid(),
            backend=self._backend,
            tasks=self._tasks,
        )

    def cancel(self, job_id: uuid.UUID) -> None:
        """Stop the job if this process runs it (it was cancelled)."""
        attempt = self._attempts.get(job_id)
        if attempt is not None and attempt.claimed and not attempt.finishing:
            attempt.task.cancel()
{%- if cookiecutter.job_backend not in ("rq", "celery") %}

    def _fresh(self) -> bool:
        """Whether the heartbeat is under half a lease old: an executor about to be
        taken for dead must start no job, or a poller elsewhere queues it again while it
        runs here."""
        return self._joined and time.monotonic() - self._beat_sent < self._lease_seconds / 2

    def claim_on_insert(self, job: Job) -> JobInserted | None:
        """Make the new `job` start its first attempt here in the INSERT that creates
        it, if this process can run it now: a commit fewer than claiming it after. Pass
        the future to run(), and resolve it with the job once inserted, or with None."""
        if self._stopping or not self._fresh() or job.name not in TASKS:
            return None
        job.status, job.attempts, job.executor_id = JobStatus.RUNNING, 1, self.executor_id
        job.started_at = clock.now()  # type: ignore[assignment]  # the INSERT's time
        return asyncio.get_running_loop().create_future()

    async def run(self, job_id: uuid.UUID, inserted: JobInserted | None = None) -> None:
        """Run one attempt of the job, if it is due and nobody else has it; or of the
        job claimed on insert, once `inserted` tells it was."""
{%- else %}

    async def run(self, job_id: uuid.UUID) -> Ended | None:
        """Run one attempt of the job, if it is due and nobody else has it; how it ended,
        or None if it did not start here."""
{%- endif %}
        busy = job_id in self._attempts or job_id in self._stuck
        if self._stopping or not self._joined or busy:
            return None
        current = asyncio.current_task()
        assert current is not None  # run() is always awaited inside a task
        attempt = self._attempts[job_id] = _Attempt(current)
        try:
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
            job = await (self._claim_one(job_id) if inserted is None else inserted)
{%- else %}
            job = await self._claim_one(job_id)
{%- endif %}
            if job is None:
                return None
            attempt.claimed = True
            waited = (job.started_at or job.run_after) - job.run_after
            metrics.job_started(job.name, waited.total_seconds())
            # Every line logged in the attempt names the job; not the request that started it.
            clear_contextvars()
            with bound_contextvars(job_id=str(job.id), job_name=job.name, attempt=job.attempts):
                {% if cookiecutter.job_backend in ("rq", "celery") %}return {% endif %}await self._attempt(job, attempt)
        finally:
            del self._attempts[job_id]

    async def _claim_one(self, job_id: uuid.UUID) -> Job | None:
        try:
            return await self._claims.submit(job_id)
        except Exception as error:
            if not database_unavailable(error):
                raise
            # The job stays queued: a poller finds it once the database is back.
            self._outage.failed(error)
            return None

    async def _claim(self, job_ids: Sequence[uuid.UUID]) -> list[Job | None]:
        async with self._sessionmaker() as session:
            # Half a lease: the heartbeat beats ten times in it, and a claim by an
            # executor about to be taken for dead would run its job twice.
            fresh = self._lease_seconds / 2
            jobs = await writes.claim(session, job_ids, self.executor_id, fresh, self._tasks)
            if jobs and self._stopping:
                # Claimed while shutting down: straight back to the queue.
                await writes.release(session, self.executor_id, [job.id for job in jobs])
                jobs = []
        by_id = {job.id: job for job in jobs}
        return [by_id.get(job_id) for job_id in job_ids]

    async def _record_successes(self, successes: Sequence[writes.Success]) -> list[Outcome]:
        try:
            async with self._sessionmaker() as session:
                recorded = await writes.record_successes(session, self.executor_id, successes)
            return ["succeeded" if done else "lost" for done in recorded]
        except Exception as error:
            if database_unavailable(error):
                raise
            refused = error
        if len(successes) > 1:
            # One result the database refuses undoes the whole transaction: each alone
            # then, so that only its job fails and its neighbours' outcomes stand.
            return [(await self._record_successes([done]))[0] for done in successes]
        # Refused alone: the job fails, once, saying why; its attempt is not given back.
        why = f"the database refused the result: {type(refused).__name__}: {refused}"
        failed = await self._record_failure(successes[0].job_id, ResultRefused(why), None)
        return ["refused" if failed else "lost"]

    async def _record_failure(
        self, job_id: uuid.UUID, error: BaseException, retry_in_seconds: float | None
    ) -> bool:
        async with self._sessionmaker() as session:
            return await writes.record_failure(
                session, job_id, self.executor_id, error, retry_in_seconds
            )

    async def _write(self, write: Callable[[], Awaitable[T]]) -> T:
        """Write a job's outcome; while the database is unavailable, try again. The job
        stays running in the table meanwhile, and this process's heartbeat resumes with
        the database, so the outcome lands unless the outage outlasts the lease."""
        delays = itertools.chain(WRITE_RETRY_SECONDS, itertools.repeat(WRITE_RETRY_MAX_SECONDS))
        while True:
            try:
                written = await write()
            except Exception as error:
                if not database_unavailable(error):
                    raise
                self._outage.failed(error)
                await asyncio.sleep(next(delays))
                continue
            self._outage.ended()
            return written

    async def stop(self, grace_seconds: float) -> None:
        """Start no more jobs; let running ones finish within the grace, then stop the
        rest and queue them again (their attempt not counted). What follows the grace is
        bounded: with the database unreachable its writes would wait on it."""
        self._stopping = True
        if self._attempts:
            await asyncio.wait({a.task for a in self._attempts.values()}, timeout=grace_seconds)
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await self._give_back_and_leave(await self._stop_attempts())
        except TimeoutError:
            logger.error(
                "stopping took over %g s past the grace (is the database reachable?); the "
                "jobs this process held run again elsewhere once their lease runs out",
                STOP_SECONDS,
            )
            self._stopped.set()
            if self._heartbeat is not None:
                self._heartbeat.cancel()

    async def _stop_attempts(self) -> list[uuid.UUID]:
        """Cancel the attempts still running, each within CANCEL_GRACE_SECONDS; the jobs
        to give back: those whose attempt stopped before writing its outcome."""
        # Claims take milliseconds: let those in flight land (and give their job back)
        # rather than cancel them halfway through a transaction.
        claiming = {a.task for a in self._attempts.values() if not a.claimed}
        if claiming:
            await asyncio.wait(claiming, timeout=CLAIM_LANDING_SECONDS)
        unfinished = [job_id for job_id, a in self._attempts.items() if not a.finishing]
        tasks = [a.task for a in self._attempts.values()]
        for task in tasks:
            task.cancel()
        # Given back once stopped (or given up as stuck), not before: no other process
        # starts a job while its attempt here may still run.
        if tasks:
            await asyncio.wait(tasks)
        return [job_id for job_id in unfinished if job_id not in self._stuck]

    async def _give_back_and_leave(self, unfinished: list[uuid.UUID]) -> None:
        if unfinished:
            with self._unless_unavailable("giving back unfinished jobs"):
                # One UPDATE for all of them: a shutdown should not queue a write per job.
                async with self._sessionmaker() as session:
                    released = await writes.release(session, self.executor_id, unfinished)
                logger.warning("%d jobs outlasted the grace; queued for the next start", released)
        # A result write does not stop with the jobs cancelled while waiting for it.
        await self._successes.drained()
        self._stopped.set()
        if self._heartbeat is not None:
            await self._heartbeat
        with self._unless_unavailable("leaving the executor table"):
            async with self._sessionmaker() as session:
                await writes.remove_executor(session, self.executor_id)

    @contextlib.contextmanager
    def _unless_unavailable(self, what: str) -> Any:
        try:
            yield
        except Exception as error:
            if not database_unavailable(error):
                raise
            # Jobs this process still holds run again elsewhere once the lease runs out.
            logger.error("%s failed: the database is unavailable (%s)", what, error)

    async def _attempt(self, job: Job, attempt: _Attempt) -> {% if cookiecutter.job_backend in ("rq", "celery") %}Ended | None{% else %}None{% endif %}:
        started = time.monotonic()
        task = TASKS[job.name]  # claimed only if known here
        try:
            # No autoflush: what the task changes is written at its commit, so that an
            # await of I/O between a change and its commit holds no write transaction
            # open{% if cookiecutter.database == "sqlite" %} (SQLite's one writer lock: every other write would wait){% else %} (row locks, and a connection idle in transaction){% endif %}.
            async with self._sessionmaker(autoflush=False) as task_session:
                result = await self._call(task, job, task_session)
            result = storable(result)
        except Exception as error:
            failure = error
            delay = None
            retryable = not isinstance(error, PermanentJobError)
            if retryable and job.attempts < allowed_attempts(job):
                delay = retry_delay(task, job.attempts - job.lost_attempts)
            attempt.finishing = True
            recorded = await self._write(lambda: self._record_failure(job.id, failure, delay))
            if not recorded:
                self._log_rejected(job)
                return None
            status = "failed" if delay is None else "retried"
            metrics.job_ended(job.name, status, time.monotonic() - started)
            logger.log(
                logging.ERROR if isinstance(error, AttemptStuck) else logging.WARNING,
                "job failed on attempt %d of %d: %s: %s; %s",
                job.attempts,
                allowed_attempts(job),
                type(failure).__name__,
                failure,
                "no attempts left" if delay is None else f"retrying in {delay:.1f} s",
                # A traceback for an error in the task, not for an expected one (a
                # timeout, a permanent error, a lost database).
                exc_info=retryable
                and not isinstance(error, AttemptTimedOut)
                and not database_unavailable(error),
            )
            return {% if cookiecutter.job_backend in ("rq", "celery") %}Ended(status, error=f"{type(failure).__name__}: {failure}"){% else %}None{% endif %}
        attempt.finishing = True
        outcome = await self._write(lambda: self._successes.submit(writes.Success(job.id, result)))
        if outcome == "lost":
            self._log_rejected(job)
            return None
        seconds = time.monotonic() - started
        if outcome == "refused":
            metrics.job_ended(job.name, "failed", seconds)
            logger.error("job failed: the database refused its result; not retried")
            return {% if cookiecutter.job_backend in ("rq", "celery") %}Ended("failed", error="UnstorableResult: the database refused its result"){% else %}None{% endif %}
        metrics.job_ended(job.name, "succeeded", seconds)
        logger.info("job succeeded in %.3f s", seconds)
        return {% if cookiecutter.job_backend in ("rq", "celery") %}Ended("succeeded", result){% else %}None{% endif %}

    async def _call(self, task: Task, job: Job, session: AsyncSession) -> Any:
        """The task's function, in an asyncio task of its own, so that the attempt ends
        within its timeout plus CANCEL_GRACE_SECONDS even if the function does not stop
        when cancelled (it swallows the cancellation, or waits on a thread)."""
        body = asyncio.create_task(task.function(self._context(job, session), **job.arguments))
        try:
            done, _ = await asyncio.wait({body}, timeout=job.timeout_seconds)
        except asyncio.CancelledError:
            # The job was cancelled, or the process stops: the attempt ends with its task.
            await self._stop_body(job, body)
            raise
        if done:
            return body.result()
        if await self._stop_body(job, body):
            raise AttemptTimedOut(f"timed out after {job.timeout_seconds:g} s")
        raise AttemptStuck(
            f"timed out after {job.timeout_seconds:g} s and did not stop within "
            f"{CANCEL_GRACE_SECONDS:g} s of being cancelled; it runs on in this process, "
            "and the job is not retried beside it"
        )

    async def _stop_body(self, job: Job, body: asyncio.Task[Any]) -> bool:
        """Cancel the attempt's task and wait for it within the grace; whether it ended.
        One that did not is left to run on, and holds its job while it does."""
        body.cancel()
        end, cancelled = time.monotonic() + CANCEL_GRACE_SECONDS, False
        while not body.done() and (left := end - time.monotonic()) > 0:
            try:
                await asyncio.wait({body}, timeout=left)
            except asyncio.CancelledError:
                cancelled = True  # cancelled again (the job, then the heartbeat): stopping
        stopped = body.done()
        if stopped and not body.cancelled():
            body.exception()  # what it raised while stopping is of no more use
        elif not stopped:
            logger.error(
                "job %s did not stop within %g s of being cancelled: it swallows its "
                "cancellation or waits on a thread (use ctx.to_thread); it runs on here, "
                "and no attempt of the job starts anywhere until it ends",
                job.id,
                CANCEL_GRACE_SECONDS,
            )
            self._stuck[job.id] = body
            body.add_done_callback(lambda _: self._stuck.pop(job.id, None))
        if cancelled:
            raise asyncio.CancelledError
        return stopped

    def _context(self, job: Job, session: AsyncSession) -> JobContext:
        return JobContext(
            job_id=job.id,
            attempt=job.attempts,
            max_attempts=allowed_attempts(job),
            session=session,
            settings=self._settings,
            _report_progress=self._progress_reporter(job.id),
        )

    def _log_rejected(self, job: Job) -> None:
        logger.warning(
            "outcome of attempt %d not recorded: the job was cancelled, or is run by "
            "another executor since this one went unheard for over %g s",
            job.attempts,
            self._lease_seconds,
        )

    def _progress_reporter(self, job_id: uuid.UUID) -> ProgressReporter:
        last_write = 0.0

        async def report(fraction: float, message: str | None) -> None:
            nonlocal last_write
            now = time.monotonic()
            if fraction < 1.0 and now - last_write < PROGRESS_WRITE_INTERVAL_SECONDS:
                return
            last_write = now
            # Progress is a hint: an outage skips it rather than failing the job.
            with self._unless_unavailable("saving progress"):
                async with self._sessionmaker() as session:
                    await writes.record_progress(
                        session, job_id, self.executor_id, fraction, message
                    )

        return report

    async def _keep_heartbeat(self) -> None:
        """Heartbeat ten times per lease, so a few missed beats do not cost the jobs; stop
        the jobs the table no longer gives this process (cancelled, or run elsewhere),
        and give back those it gives this process but that do not run here."""
        outage = Outage(logger, "executor heartbeat")
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._lease_seconds / 10)
            if self._stopped.is_set():
                return
            # Taken before the heartbeat: a job claimed after it is not judged by it.
            running = {job_id for job_id, a in self._attempts.items() if a.claimed}
            here = {*self._attempts, *self._stuck}
            sent = time.monotonic()
            try:
                held = await self._beat(here)
            except Exception as error:
                if not database_unavailable(error):
                    logger.exception("the executor heartbeat failed; trying again")
                    self._beating_since = None
                    continue
                outage.failed(error)
                self._beating_since = None
                continue
            outage.ended()
            self._beat_sent = sent
            if self._beating_since is None:
                self._beating_since = time.monotonic()
            for job_id in running - held:
                attempt = self._attempts.get(job_id)
                if attempt is not None and not attempt.finishing:
                    logger.info("job %s was cancelled or is run elsewhere now; stopping it", job_id)
                    attempt.task.cancel()

    async def _beat(self, here: set[uuid.UUID]) -> set[uuid.UUID]:
        if not self._joined:
            await self._join()
            return set()
        async with self._sessionmaker() as session:
            held = await writes.heartbeat(session, self.executor_id, here)
            if held is None:
                logger.error(
                    "this process went unheard for over %g s and was taken for dead: its "
                    "jobs run elsewhere now; rejoining",
                    self._lease_seconds,
                )
                await writes.register_executor(session, self._executor_row())
                return set()
            # A claim whose answer was lost (the connection broke after the commit). Not
            # while stopping: the stop gives back the jobs whose attempts it ended, their
            # attempt not counted, once they are out of _attempts.
            orphans = held - self._attempts.keys()
            if orphans and not self._stopping:
                released = await writes.release(
                    session, self.executor_id, orphans, give_back_attempt=False
                )
                if released:
                    logger.warning("%d jobs held here but not running here: queued again", released)
            return held
