"""Hands jobs to RQ through Redis; RQ's worker (`python -m {{ cookiecutter.project_slug }}.worker`) runs them.

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
        # Each RQ job carries its task's name and timeout, for RQ's tools to show.
        async with self._sessionmaker() as session:
            queued = await reads.queued_tasks(session, job_ids)
        if queued:
            # redis-py blocks; a thread keeps a slow Redis from stalling the event loop.
            await asyncio.to_thread(self._enqueue, queued)

    def _enqueue(self, queued: list[tuple[uuid.UUID, str, float]]) -> None:
        job_ids = [str(job_id) for job_id, _, _ in queued]
        sending = [f"{self.queue.key}:sending:{job_id}" for job_id in job_ids]
        # A web process and a poller may send the same job at once: each first takes the
        # job's sending mark, and only the one that got it looks further. Only when each
        # job was sent is read from its record: nothing in it is deserialized, so nothing
        # someone wrote into it is ever loaded.
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id, mark in zip(job_ids, sending, strict=True):
                pipe.set(mark, 1, nx=True, ex=SENDING_MARK_SECONDS)
                pipe.hmget(RQJob.key_for(job_id), ["status", "enqueued_at"])
            replies = pipe.execute()
        marked: list[bool] = replies[0::2]
        records: list[list[bytes | None]] = replies[1::2]
        # Waiting for a worker, or taken by one; a job RQ finished (or failed) is sent again.
        sent = [at if status in (b"queued", b"started") else None for status, at in records]
        # A worker moves each id it takes onto RQ's intermediate list, and clears it there
        # once the job is done: one that dies in between leaves it there.
        taken = set(self._intermediate.get_job_ids()) if any(sent) else set()
        to_send = [
            (job_id, name, timeout)
            for job_id, (_, name, timeout), sent_at, mine in zip(
                job_ids, queued, sent, marked, strict=True
            )
            if mine and not self._on_its_way(sent_at, job_id in taken)
        ]
        with self.redis.pipeline() as pipe:
            for job_id, _, _ in to_send:
                if job_id in taken:
                    pipe.lrem(self._intermediate.key, 0, job_id)
                # A job sent again leaves RQ's record of its last attempt: it shows
                # queued, not also failed, finished or running.
                for registry in self._registries:
                    pipe.zrem(registry, job_id)
            if to_send:
                self.queue.enqueue_many(
                    [
                        Queue.prepare_data(
                            RUN_JOB,
                            args=(job_id,),
                            job_id=job_id,
                            description=name,
                            # The runner stops the attempt at the task's timeout: RQ's
                            # own limit is only a backstop past it.
                            timeout=int(timeout + CANCEL_GRACE_SECONDS + RQ_TIMEOUT_MARGIN_SECONDS),
                            # RQ's records of jobs live as long as the job table's rows.
                            result_ttl=self._retention_seconds,
                            failure_ttl=self._retention_seconds,
                        )
                        for job_id, name, timeout in to_send
                    ],
                    pipeline=pipe,
                )
            if held := [mark for mark, mine in zip(sending, marked, strict=True) if mine]:
                pipe.delete(*held)
            pipe.execute()

    def _on_its_way(self, sent_at: bytes | None, taken: bool) -> bool:
        if sent_at is None:
            return False
        if not taken:
            return True  # waiting in the queue
        # The table says queued, yet a worker took the job: fine for a moment (the worker
        # is about to claim it), but after a lease's length it has died.
        try:
            since = utcparse(sent_at.decode())
        except ValueError:
            return False  # not a time this service wrote: send the job again
        return since > datetime.now(UTC) - timedelta(seconds=self._lease_seconds)

    def cancel(self, job_id: uuid.UUID) -> None:
        """Nothing to do here: a waiting job is skipped when a worker finds it cancelled,
        and the worker running it stops it at its next heartbeat."""

    async def stop(self, grace_seconds: float) -> None:
        """The workers own running jobs; the web process only closes its connection."""
        self._accepting = False
        self.redis.close()
        logger.info("job backend %s stopped", self.name)
