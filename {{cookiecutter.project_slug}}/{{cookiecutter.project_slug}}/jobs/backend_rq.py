"""Hands jobs to RQ through Redis; RQ's worker runs them (see worker.py).

Each RQ job names only the job's id: the job table stays the record of every job, so a
job that Redis or a worker lost is found there by a worker's poller and sent again.
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
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.errors import JobsUnavailable
from {{ cookiecutter.project_slug }}.jobs.runner import CANCEL_GRACE_SECONDS
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

# The function RQ's record of every job names; this project's worker reads only the id.
RUN_JOB = "{{ cookiecutter.project_slug }}.worker.run_job"
# RQ's time limit of a job is its task's timeout plus the runner's cancel grace and this.
RQ_TIMEOUT_MARGIN_SECONDS = 10
# How long a sender may hold a job's sending mark, should it die holding it.
SENDING_MARK_SECONDS = 10
# The poller sends at most this many due jobs to Redis at a time.
POLL_BATCH = 500


# A connect or command that takes longer fails, as an outage: without it, a lost network
# (packets dropped, nothing refused) would leave a call, and a shutdown, hanging.
REDIS_TIMEOUT_SECONDS = 5


class Backend:
    name = "rq"

    def __init__(self, settings: Settings, sessionmaker: SessionMaker) -> None:
        self.redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        # JSON, not RQ's default pickle: what is read from Redis never runs code.
        self.queue = Queue(settings.rq_queue, connection=self.redis, serializer=JSONSerializer)
        self._intermediate = IntermediateQueue(self.queue.key, connection=self.redis)
        self._registries = [
            self.queue.started_job_registry.key,
            self.queue.finished_job_registry.key,
            self.queue.failed_job_registry.key,
        ]
        self._retention_seconds = int(settings.job_retention_days * 86400)
        self._sessionmaker = sessionmaker
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
        # redis-py blocks; threads keep a slow Redis from stalling the event loop.
        unsent = await asyncio.to_thread(self._unsent, [str(job_id) for job_id in job_ids])
        if not unsent:
            return
        # Each RQ job carries its task's name and timeout, for RQ's tools to show. (Should
        # this read fail, the jobs' sending marks lapse in SENDING_MARK_SECONDS.)
        async with self._sessionmaker() as session:
            queued = await reads.queued_tasks(session, [uuid.UUID(job_id) for job_id in unsent])
        await asyncio.to_thread(self._send, queued, unsent)

    def _unsent(self, job_ids: list[str]) -> dict[str, bool]:
        """Of these jobs, those not on their way to a worker, each with whether a dead
        worker left it on RQ's intermediate list; their sending marks now held here."""
        unsent = self._not_on_their_way(job_ids)
        if not unsent:
            return {}
        # A web process and a poller may send the same job at once: each takes the job's
        # sending mark first, and only the one that got it looks again and sends it.
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in unsent:
                pipe.set(self._mark(job_id), 1, nx=True, ex=SENDING_MARK_SECONDS)
            marked = pipe.execute()
        mine = [job_id for job_id, got in zip(unsent, marked, strict=True) if got]
        still = self._not_on_their_way(mine) if mine else {}
        if gone := [self._mark(job_id) for job_id in mine if job_id not in still]:
            self.redis.delete(*gone)
        return still

    def _not_on_their_way(self, job_ids: list[str]) -> dict[str, bool]:
        # Only RQ's status and times are read from each job's record: nothing in it is
        # deserialized, so nothing someone wrote into it is ever loaded.
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(RQJob.key_for(job_id), ["status", "enqueued_at", "started_at"])
            records: list[list[bytes | None]] = pipe.execute()
        # A worker moves each id it takes onto RQ's intermediate list, until it starts it
        # (a worker of several queues: until it is done with it).
        live = any(status in (b"queued", b"started") for status, _, _ in records)
        taken = set(self._intermediate.get_job_ids()) if live else set()
        return {
            job_id: job_id in taken
            for job_id, record in zip(job_ids, records, strict=True)
            if not self._on_its_way(record, job_id in taken)
        }

    def _send(self, queued: list[tuple[uuid.UUID, str, float]], unsent: dict[str, bool]) -> None:
        """Send the jobs still queued in the table, and let go of every sending mark."""
        with self.redis.pipeline() as pipe:
            for job_id, _, _ in queued:
                if unsent[str(job_id)]:
                    pipe.lrem(self._intermediate.key, 0, str(job_id))
                # A job sent again leaves RQ's record of its last attempt: it shows
                # queued, not also failed, finished or running.
                for registry in self._registries:
                    pipe.zrem(registry, str(job_id))
            if queued:
                self.queue.enqueue_many(
                    [
                        Queue.prepare_data(
                            RUN_JOB,
                            args=(str(job_id),),
                            job_id=str(job_id),
                            description=name,
                            # The runner stops the attempt at the task's timeout: RQ's
                            # own limit is only a backstop past it.
                            timeout=int(timeout + CANCEL_GRACE_SECONDS + RQ_TIMEOUT_MARGIN_SECONDS),
                            # RQ's records of jobs live as long as the job table's rows.
                            result_ttl=self._retention_seconds,
                            failure_ttl=self._retention_seconds,
                        )
                        for job_id, name, timeout in queued
                    ],
                    pipeline=pipe,
                )
            pipe.delete(*[self._mark(job_id) for job_id in unsent])
            pipe.execute()

    def _mark(self, job_id: str) -> str:
        return f"{self.queue.key}:sending:{job_id}"

    def _on_its_way(self, record: list[bytes | None], taken: bool) -> bool:
        """Whether RQ's record of a job queued in the table says it is on its way: waiting
        in the queue, or just taken by a worker that is about to claim it. Taken, or
        started, for longer than a lease, its worker died; finished or failed, RQ is done
        with it: either way it is sent again."""
        status, enqueued_at, started_at = record
        if status == b"queued" and not taken:
            return True
        since = {b"queued": enqueued_at, b"started": started_at}.get(status or b"")
        if since is None:
            return False
        try:
            moment = utcparse(since.decode())
        except ValueError:
            return False  # not a time RQ wrote: send the job again
        return moment > datetime.now(UTC) - timedelta(seconds=self._lease_seconds)

    def cancel(self, job_id: uuid.UUID) -> None:
        """Nothing to do here: a waiting job is skipped when a worker finds it cancelled,
        and the worker running it stops it at its next heartbeat."""

    async def stop(self, grace_seconds: float) -> None:
        """The workers own running jobs; the web process only closes its connection."""
        self._accepting = False
        self.redis.close()
        logger.info("job backend %s stopped", self.name)
