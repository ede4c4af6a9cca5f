"""Hands jobs to RQ through Redis; `python -m {{ cookiecutter.project_slug }}.worker` runs them.

Redis carries only job ids: the job table stays the record of every job, so a job
that Redis or a worker lost is found there by the worker's poller and sent again.
"""

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.errors import JobsUnavailable
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

# What RQ runs for every job: the worker's way into the shared runner.
RUN_JOB = "{{ cookiecutter.project_slug }}.worker.run_job"
# The poller sends at most this many due jobs to Redis at a time.
POLL_BATCH = 500
WAITING = {RQJobStatus.QUEUED, RQJobStatus.SCHEDULED, RQJobStatus.DEFERRED}
FAILED_JOB_TTL_SECONDS = 7 * 24 * 3600
# Workers write RQ's heartbeat to Redis this often, busy or idle, so RQ's own
# maintenance never takes a busy worker for dead.
WORKER_HEARTBEAT_SECONDS = 10


def as_utc(moment: datetime) -> datetime:
    # RQ keeps UTC times without a zone.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Backend:
    name = "rq"

    def __init__(self, settings: Settings, sessionmaker: SessionMaker) -> None:
        # The sessionmaker is the workers' (worker.py): this side only sends ids to Redis.
        self.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        self.queue = Queue(settings.rq_queue, connection=self.redis)
        self._intermediate = IntermediateQueue(self.queue.key, connection=self.redis)
        self._lease_seconds = settings.job_lease_seconds
        self._accepting = False

    async def start(self) -> None:
        # Fail at start-up, with the URL's host in the error, rather than at the first job.
        await asyncio.to_thread(self.redis.ping)
        self._accepting = True
        logger.info("job backend %s started (queue %s)", self.name, self.queue.name)

    def check_accepting(self) -> None:
        if not self._accepting:
            raise JobsUnavailable("the service is shutting down")

    def in_hand(self) -> Collection[uuid.UUID]:
        # Redis holds them: dispatch() skips the jobs already waiting there.
        return ()

    def free_slots(self) -> int:
        return POLL_BATCH

    async def dispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        # redis-py blocks; a thread keeps a slow Redis from stalling the event loop.
        await asyncio.to_thread(self._enqueue, [str(job_id) for job_id in job_ids])

    def _enqueue(self, job_ids: list[str]) -> None:
        known = RQJob.fetch_many(job_ids, connection=self.redis)
        # A worker moves the job it takes to RQ's intermediate list, where it stays
        # "queued" until started: a worker that dies in between leaves it there.
        waiting = any(rq_job and rq_job.get_status(refresh=False) in WAITING for rq_job in known)
        taken = set(self._intermediate.get_job_ids()) if waiting else set()
        to_send = [
            job_id
            for job_id, rq_job in zip(job_ids, known, strict=True)
            if not self._on_its_way(rq_job, job_id in taken)
        ]
        if not to_send:
            return
        for job_id in taken.intersection(to_send):
            self._intermediate.remove(job_id)  # or RQ would later fail the one sent now
        self.queue.enqueue_many(
            [
                Queue.prepare_data(
                    RUN_JOB,
                    args=(job_id,),
                    job_id=job_id,
                    # The runner enforces each job's own timeout.
                    timeout=-1,
                    # Results live in the job table; Redis keeps nothing after success.
                    result_ttl=0,
                    failure_ttl=FAILED_JOB_TTL_SECONDS,
                )
                for job_id in to_send
            ]
        )

    def _on_its_way(self, rq_job: RQJob | None, taken: bool) -> bool:
        if rq_job is None:
            return False
        status = rq_job.get_status(refresh=False)
        if status in WAITING and not taken:
            return True
        # The table says queued, yet a worker took or started the job: fine for a moment
        # (the worker is about to claim it), but after a lease's length it has died.
        if status == RQJobStatus.STARTED:
            since = rq_job.started_at
        elif taken:
            since = rq_job.enqueued_at
        else:
            return False
        return since is not None and (
            as_utc(since) > datetime.now(UTC) - timedelta(seconds=self._lease_seconds)
        )

    def cancel(self, job_id: uuid.UUID) -> None:
        """Nothing to do here: a waiting job is skipped when a worker finds it cancelled,
        and the worker running it stops it at its next lease renewal."""

    async def stop(self, grace_seconds: float) -> None:
        """The workers own running jobs; the web process only closes its connection."""
        self._accepting = False
        self.redis.close()
        logger.info("job backend %s stopped", self.name)
