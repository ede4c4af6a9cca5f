"""Hands jobs to Celery through Redis; Celery's worker runs them (see worker.py).

Each Celery task names only the job's id: the job table stays the record of every job, so
a job that Redis or a worker lost is found there by a worker's poller and sent again.
"""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import cast

from celery import Celery
from redis import Redis
from redis.exceptions import RedisError

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.errors import JobsUnavailable
from {{ cookiecutter.project_slug }}.jobs.runner import CANCEL_GRACE_SECONDS
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

# The one Celery task of this service: one attempt of the job whose id it is given.
# Each message carries its job's task name too (Celery's `shadow`), which Celery's logs,
# events and Flower show.
RUN_JOB = "{{ cookiecutter.project_slug }}.run_job"
# Celery's hard time limit of an attempt is its task's timeout plus the runner's cancel
# grace and this: only a backstop past the runner's own limit.
TIME_LIMIT_MARGIN_SECONDS = 10
# The poller sends at most this many due jobs to Redis at a time.
POLL_BATCH = 500
# Where Celery's Redis transport keeps the messages taken and not yet acknowledged (as
# many as the workers' child processes), by delivery tag.
UNACKED = "unacked"
# Takes each mark that holds another version than the one given (or every one, forced),
# for as long as its message may wait; one per job taken, else 0. In one step: no two
# senders take one.
TAKE_MARKS = """
local taken = {}
for i, key in ipairs(KEYS) do
    local version = ARGV[i + 2]
    if ARGV[2] == "1" or redis.call("GET", key) ~= version then
        redis.call("SET", key, version, "EX", ARGV[1])
        taken[i] = 1
    else
        taken[i] = 0
    end
end
return taken
"""
# A connect or command that takes longer fails, as an outage: without it, a lost network
# (packets dropped, nothing refused) would leave a call, and a shutdown, hanging.
REDIS_TIMEOUT_SECONDS = 5


def celery_app(settings: Settings) -> Celery:
    """The Celery app of the web processes and the workers, from the settings."""
    app = Celery("{{ cookiecutter.project_slug }}", set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # A message a worker took is given to another after this long unacknowledged.
            "visibility_timeout": settings.celery_visibility_timeout_seconds,
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        },
        task_default_queue=settings.celery_queue,
        # The job table is the record of every job: no result backend.
        task_ignore_result=True,
        # JSON only, in and out: nothing read from Redis ever runs code.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Acknowledged once the attempt ended, not when taken, and given back when its
        # child process dies: a killed child's job is delivered again, not lost (celery
        # #3541, #7924). The job table refuses a copy of a job that ended or runs
        # elsewhere, and fails a job lost too often, so the redeliveries end (#9082).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message per child process at a time: no worker hoards jobs (#4537).
        worker_prefetch_multiplier=1,
        # A cold stop (SIGQUIT, a second Ctrl+C) still gives running jobs the grace.
        worker_soft_shutdown_timeout=settings.job_shutdown_grace_seconds,
        # This service's logging (observability.py) formats Celery's lines too.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


class Backend:
    name = "celery"

    def __init__(self, settings: Settings, sessionmaker: SessionMaker) -> None:
        self.app = celery_app(settings)
        # For the sending marks and the readiness check.
        self.redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._take = self.redis.register_script(TAKE_MARKS)
        self._queue = settings.celery_queue
        self._marks = f"{settings.celery_queue}:sent:"
        self._lease_seconds = settings.job_lease_seconds
        # A job's mark lasts as long as the message it stands for may wait unseen.
        self._mark_seconds = int(settings.celery_visibility_timeout_seconds)
        self._sessionmaker = sessionmaker
        self._accepting = False
        # Each marked job's message, as last seen by _gone(): where (a worker's delivery
        # tag, or b"" for nowhere), and since when (monotonic).
        self._seen: dict[str, tuple[bytes, float]] = {}

    async def start(self) -> None:
        # Fail at start-up, with the URL's host in the error, rather than at the first job.
        await asyncio.to_thread(self.redis.ping)
        self._accepting = True
        queue = self.app.conf.task_default_queue
        logger.info("job backend %s started (queue %s)", self.name, queue)

    def check_accepting(self) -> None:
        if not self._accepting:
            raise JobsUnavailable("the service is shutting down")

    def in_hand(self) -> Collection[uuid.UUID]:
        # Redis holds them: dispatch() skips the jobs already waiting there.
        return ()

    def free_slots(self) -> int:
        return POLL_BATCH

    async def dispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        async with self._sessionmaker() as session:
            queued = await reads.queued_tasks(session, job_ids)
        if queued:
            # redis-py and Celery's producer block; threads keep a slow Redis from
            # stalling the event loop.
            await asyncio.to_thread(self._send_unsent, queued)

    def _send_unsent(self, queued: list[tuple[uuid.UUID, str, float, datetime]]) -> None:
        """Send each of these queued jobs that has no message on its way. A job's mark
        holds when it was due as of its last message: queued again since (retried, given
        back, recovered), it is due anew, and needs another message; a message that is
        gone is sent again (_gone)."""
        versions = {str(job_id): due.isoformat() for job_id, _, _, due in queued}
        taken = self._take_marks(versions)
        if marked := [job_id for job_id in versions if job_id not in taken]:
            gone = {job_id: versions[job_id] for job_id in self._gone(marked)}
            taken |= self._take_marks(gone, force=True)
        if not taken:
            return
        try:
            with self.app.producer_or_acquire() as producer:
                for job_id, name, timeout, _ in queued:
                    if str(job_id) in taken:
                        self.app.send_task(
                            RUN_JOB,
                            args=(str(job_id),),
                            task_id=str(job_id),
                            shadow=name,
                            time_limit=int(
                                timeout + CANCEL_GRACE_SECONDS + TIME_LIMIT_MARGIN_SECONDS
                            ),
                            producer=producer,
                        )
        except BaseException:
            self._let_go(taken)
            raise

    def _take_marks(self, versions: dict[str, str], force: bool = False) -> set[str]:
        """The jobs whose marks this sender took: those whose mark held another version
        (or none), or all of them when forced. A web process and pollers may send the same
        job at once: only the one that takes its mark sends it."""
        if not versions:
            return set()
        keys = [self._mark(job_id) for job_id in versions]
        taken = self._take(keys=keys, args=[self._mark_seconds, int(force), *versions.values()])
        return {job_id for job_id, got in zip(versions, taken, strict=True) if got}

    def _gone(self, job_ids: list[str]) -> set[str]:
        """Of these marked jobs, those whose message is gone: in the hands of the same
        worker for over a lease, the job unclaimed (the worker died before claiming it:
        Redis would give it back only after the visibility timeout), or in no worker's
        hands with the queue empty for over a lease (a worker took it and did not run the
        job). Judged by how long this sender has seen it so, in its own clock: the
        workers' clocks, which stamp the messages taken, may differ from it."""
        taken = cast("dict[bytes, bytes]", self.redis.hgetall(UNACKED))
        holders = {json.loads(message)[0]["headers"]["id"]: tag for tag, message in taken.items()}
        nowhere = b"" if self.redis.llen(self._queue) == 0 else None
        now = time.monotonic()
        seen: dict[str, tuple[bytes, float]] = {}
        gone: set[str] = set()
        for job_id in job_ids:
            where = holders.get(job_id, nowhere)
            if where is None:
                continue  # maybe waiting in the queue
            was, since = self._seen.get(job_id, (where, now))
            if was != where:
                since = now
            if now - since > self._lease_seconds:
                gone.add(job_id)
            else:
                seen[job_id] = (where, since)
        # Only the jobs of this look: those claimed or sent again since are forgotten.
        self._seen = seen
        return gone

    def _let_go(self, job_ids: Collection[str]) -> None:
        """A send that failed lets go of its marks (should Redis be gone, _gone() finds
        their messages gone once it answers again)."""
        try:
            self.redis.delete(*[self._mark(job_id) for job_id in job_ids])
        except RedisError as error:
            logger.debug("sending marks left to lapse: %s", error)

    def _mark(self, job_id: str) -> str:
        return self._marks + job_id

    def cancel(self, job_id: uuid.UUID) -> None:
        """Nothing to do here: a waiting job is skipped when a worker finds it cancelled,
        and the worker running it stops it at its next heartbeat."""

    async def stop(self, grace_seconds: float) -> None:
        """The workers own running jobs; the web process only closes its connections."""
        self._accepting = False
        self.redis.close()
        self.app.close()
        logger.info("job backend %s stopped", self.name)
