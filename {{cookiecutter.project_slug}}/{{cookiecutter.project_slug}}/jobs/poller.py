"""Finds work that no request handed over: retries and delayed jobs coming due, jobs left
queued by a restart, jobs whose executor stopped its heartbeat, and the fire times of
schedules. It runs beside every executor, and several pollers at once are safe: each
change it makes is one atomic UPDATE or an insert under a unique key. Times are the
database's."""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import metrics
from {{ cookiecutter.project_slug }}.db import Outage, SessionMaker, database_unavailable
from {{ cookiecutter.project_slug }}.jobs import moves, reads, recovery
from {{ cookiecutter.project_slug }}.jobs.base import JobBackend
from {{ cookiecutter.project_slug }}.jobs.registry import TASKS, Schedule
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

# A fire time no poller enqueued within this long (every process was down, or the
# database was) counts as missed: run once late, or skipped without SCHEDULE_CATCH_UP.
MISSED_AFTER = timedelta(seconds=60)
# How long a stop waits for the poll in progress to end: milliseconds with the database.
POLL_STOP_SECONDS = 2.0


class Poller:
    def __init__(
        self,
        sessionmaker: SessionMaker,
        backend: JobBackend,
        settings: Settings,
        steady: Callable[[], bool],
        schedules: Sequence[Schedule] = (),
    ) -> None:
        """`steady` tells whether this process's own heartbeat has gone unbroken for a
        lease: only then is another executor's late heartbeat its own, and not an outage
        that every process shared, so only then are its jobs taken for stalled."""
        self._sessionmaker = sessionmaker
        self._backend = backend
        self._interval_seconds = settings.job_poll_seconds
        self._lease_seconds = settings.job_lease_seconds
        self._unknown_task_seconds = settings.job_unknown_task_seconds
        self._schedules = schedules
        self._catch_up = settings.schedule_catch_up
        # The fire time of each schedule last seen enqueued: one insert per fire time.
        self._fired: dict[str, datetime] = {}
        self._outage = Outage(logger, "polling for due jobs")
        self._steady = steady
        self._stopped = asyncio.Event()
        # Set by stop(){% if cookiecutter.job_backend not in ("rq", "celery") %} and wake(){% endif %}: ends the wait between polls early.
        self._nudged = asyncio.Event()
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
        # The last poll filled every free slot: more due jobs may wait in the table.
        self.left_some = False
{%- endif %}

    async def start(self) -> asyncio.Task[None]:
        """Poll now, then every interval in a task of its own, until stop(); returns that
        task. Awaited at start-up, so what a restart left behind is recovered and under
        way before the first request is served."""
        await self._poll()
        return asyncio.create_task(self._poll_every_interval())

    async def _poll_every_interval(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self._interval_seconds)
            self._nudged.clear()
            if self._stopped.is_set():
                return
            await self._poll()

    async def _poll(self) -> None:
        try:
            read = await self.poll_once()
        except Exception as error:
            if not database_unavailable(error):
                logger.exception("polling for due jobs failed; trying again")
                return
            self._outage.failed(error)
            return
        if read:
            self._outage.ended()

    def stop(self) -> None:
        """End the polling after the poll in progress, if any: never halfway through a
        write."""
        self._stopped.set()
        self._nudged.set()

    async def stopped(self, task: asyncio.Task[None]) -> None:
        """After stop(), wait for the polling `task` (start()'s) to end, within
        POLL_STOP_SECONDS: with the database unreachable the poll in progress would wait
        for its timeout, so it is cancelled, its transaction uncommitted."""
        done, _ = await asyncio.wait({task}, timeout=POLL_STOP_SECONDS)
        if not done:
            task.cancel()
{%- if cookiecutter.job_backend not in ("rq", "celery") %}

    def wake(self) -> None:
        """Poll now rather than at the end of the interval: the backend has room again
        for jobs left in the table."""
        self.left_some = False  # until that poll tells
        self._nudged.set()
{%- endif %}

    async def poll_once(self) -> bool:
        """One poll; whether it read the database (with nothing to do, it does not, and
        then it cannot tell that an outage ended)."""
        async with self._sessionmaker() as session:
            read = self._steady()
            if read:
                await self._recover_lost_jobs(session)
                await self._fail_unknown_tasks(session)
            if self._schedules:
                read = True
                now = await reads.database_time(session)
                for schedule in self._schedules:
                    await self._enqueue_fire(schedule, now)
            slots = self._backend.free_slots()
            if slots <= 0:
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
                # This poll cannot tell, and wake() cleared the flag: the next slot to
                # free must wake a poll that can.
                self.left_some = True
{%- endif %}
                return read
            # Only the tasks this process knows: others wait for a process that does.
            due = await reads.due_job_ids(session, slots, list(TASKS), self._backend.in_hand())
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
        self.left_some = len(due) == slots
{%- endif %}
        if due:
            await self._backend.dispatch(due)
        return True

    async def _recover_lost_jobs(self, session: AsyncSession) -> None:
        requeued, failed = await recovery.recover_lost_jobs(session, self._lease_seconds)
        if requeued or failed:
            logger.warning(
                "found %d jobs whose process went unheard for over %g s: %d queued again, "
                "%d failed (their process died in %d of their attempts)",
                len(requeued) + len(failed),
                self._lease_seconds,
                len(requeued),
                len(failed),
                recovery.MAX_LOST_ATTEMPTS,
            )
        for name in requeued:
            metrics.job_counted(name, "retried")
        for name in failed:
            metrics.job_counted(name, "failed")

    async def _fail_unknown_tasks(self, session: AsyncSession) -> None:
        failed = await recovery.fail_unknown_tasks(
            session, self._lease_seconds, self._unknown_task_seconds
        )
        if failed:
            logger.error(
                "failed %d jobs whose task no running executor knew within %g s of their "
                "being due: %s",
                len(failed),
                self._unknown_task_seconds,
                ", ".join(sorted({name for _, name in failed})),
            )

    async def _enqueue_fire(self, schedule: Schedule, now: datetime) -> None:
        """Enqueue the schedule's latest fire time, once: after downtime the fire times
        missed meanwhile make one job, not a burst of them."""
        fire = schedule.cron.last_fire(now)
        if fire is None or self._fired.get(schedule.id) == fire:
            return
        # One key per schedule and fire time: whichever process inserts it first wins.
        key = schedule.key(fire)
        async with self._sessionmaker() as session:
            if await moves.find_by_key(session, key) is None:
                if now - fire > MISSED_AFTER and not self._catch_up:
                    logger.info("skipped the missed fire of %s at %s", schedule.id, fire)
                else:
                    job, created = await moves.add_unless_duplicate(session, schedule.new_job(fire))
                    if created:
                        logger.info("enqueued job %s of schedule %s", job.id, schedule.id)
        self._fired[schedule.id] = fire
