"""What the rest of the service calls: submit (one job or many), cancel and retry jobs.

    job = process_document.new_job(document_id=str(document.id))
    document.job_id = job.id
    session.add(document)
    job = await control.submit(session, job)  # one transaction for both rows

Routes never talk to the backend directly.
"""

import logging
import uuid
from collections.abc import Sequence

{% if cookiecutter.job_backend not in ("rq", "celery") -%}
from sqlalchemy.orm.attributes import set_committed_value
{% endif -%}
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import metrics
from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import moves, reads
from {{ cookiecutter.project_slug }}.jobs.base import JobBackend{% if cookiecutter.job_backend not in ("rq", "celery") %}, JobInserted{% endif %}
from {{ cookiecutter.project_slug }}.jobs.errors import JobNotFound, JobStateConflict
from {{ cookiecutter.project_slug }}.models import Job, JobStatus

logger = logging.getLogger(__name__)


class JobControl:
    def __init__(self, sessionmaker: SessionMaker, backend: JobBackend) -> None:
        self._sessionmaker = sessionmaker
        self.backend = backend

    async def submit(self, session: AsyncSession, job: Job) -> Job:
        """Commit `job` together with whatever else `session` holds, then start it (a
        delayed job is started by a poller once it is due).

        If its idempotency key is taken, nothing of the session is written and the job
        that holds the key is returned instead, also when requests race for it.
        """
        if job.idempotency_key is not None:
            existing = await moves.find_by_key(session, job.idempotency_key)
            if existing is not None:
                return existing
        self.backend.check_accepting()
        due_now = job.run_after is None
{%- if cookiecutter.job_backend not in ("rq", "celery") %}
        # Started in its INSERT if the backend has room: a commit fewer than claiming
        # it after. (Not in submit_many(): an INSERT of many rows that each hold the
        # database's time as an expression goes row by row, and costs more than it saves.)
        inserted = await self.backend.start_on_insert(job) if due_now else None
        try:
            job, created = await moves.add_unless_duplicate(session, job)
        except BaseException:
            _tell(inserted, None)
            raise
        if inserted is None:
            if created and due_now:
                await self._dispatch([job.id])
        elif created:
            # The INSERT wrote its own time as both, and read back only run_after.
            set_committed_value(job, "started_at", job.run_after)
            _tell(inserted, job)
        else:
            _tell(inserted, None)
{%- else %}
        job, created = await moves.add_unless_duplicate(session, job)
        if created and due_now:
            await self._dispatch([job.id])
{%- endif %}
        return job

    async def submit_many(self, session: AsyncSession, jobs: Sequence[Job]) -> list[Job]:
        """Commit `jobs` together with whatever else `session` holds, then start them:
        a fan-out of many jobs costs one transaction, not one per job.

        An idempotency key guards one job, so these jobs carry none: to make a fan-out
        safe to repeat, give a key to the request or job that starts it.
        """
        if any(job.idempotency_key is not None for job in jobs):
            raise ValueError("submit_many() takes jobs without idempotency keys; use submit()")
        self.backend.check_accepting()
        due_now = [job.id for job in jobs if job.run_after is None]
        session.add_all(jobs)
        await session.commit()
        if due_now:
            await self._dispatch(due_now)
        return list(jobs)

    async def get(self, job_id: uuid.UUID) -> Job:
        async with self._sessionmaker() as session:
            job = await reads.get(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    async def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued or running job. Cancelling a cancelled job changes nothing."""
        async with self._sessionmaker() as session:
            cancelled = await moves.cancel(session, job_id)
        job = await self.get(job_id)
        if cancelled:
            metrics.job_counted(job.name, "cancelled")
            self.backend.cancel(job_id)
        elif job.status != JobStatus.CANCELLED:
            raise JobStateConflict(
                f"job {job_id} is {job.status}; only queued or running jobs can be cancelled"
            )
        return job

    async def retry(self, job_id: uuid.UUID) -> Job:
        """Run a failed or cancelled job again: same id, attempts counted from zero."""
        self.backend.check_accepting()
        async with self._sessionmaker() as session:
            retried = await moves.retry(session, job_id)
        job = await self.get(job_id)
        if not retried:
            raise JobStateConflict(
                f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried"
            )
        await self._dispatch([job_id])
        return job

    async def _dispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        try:
            await self.backend.dispatch(job_ids)
        except Exception:
            # The jobs are committed as queued: the poller starts them once the backend
            # answers.
            logger.exception(
                "%d job(s) stored but not started yet, the first %s", len(job_ids), job_ids[0]
            )
{%- if cookiecutter.job_backend not in ("rq", "celery") %}


def _tell(inserted: JobInserted | None, job: Job | None) -> None:
    """Tell a job's attempt started on insert whether the INSERT landed. One that
    landed but is told not (the commit was cut short) is given back by the next
    heartbeat; one whose attempt was stopped meanwhile (a shutdown) is told nothing."""
    if inserted is not None and not inserted.done():
        inserted.set_result(job)
{%- endif %}
