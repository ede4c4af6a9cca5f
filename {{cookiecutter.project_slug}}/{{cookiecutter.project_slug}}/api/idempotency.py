"""The `Idempotency-Key` header: the same key on the same endpoint gives the same resource
and job, however often, and however many requests race with it."""

import uuid
from typing import Annotated, Protocol, TypeVar

from fastapi import Header, HTTPException, status
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.api.responses import Responses, refusal
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Job

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat a request safely: the same key returns what the first one made.",
    ),
]


def scoped(endpoint: str, key: str | None) -> str | None:
    """The job table's key for a client's key: one endpoint's keys never meet another's."""
    return None if key is None else f"{endpoint}:{key}"


class WorkedOn(Protocol):
    """A row that a job works on: any table with an `id` and a `job_id` column."""

    id: uuid.UUID
    job_id: uuid.UUID | None


Started = TypeVar("Started", bound=WorkedOn)


async def start(
    session: AsyncSession, control: JobControl, row: Started, job: Job
) -> tuple[Started, Job]:
    """Commit `row` together with the job that works on it, then start the job.

    When the job's idempotency key was used before, nothing is written: the row and job
    that the key made are returned instead, also when requests race.
    """
    row.job_id = job.id
    session.add(row)
    submitted = await control.submit(session, job)
    if submitted.id == job.id:
        return row, job
    model = type(row)
    made = (await session.exec(select(model).where(model.job_id == submitted.id))).first()
    if made is None:
        # The cleanup removed the row past its retention; the key's job is kept longer.
        raise HTTPException(status.HTTP_410_GONE, PURGED)
    return made, submitted


PURGED = "what this Idempotency-Key made was removed after its retention: use a new key"
# For the routes whose rows the cleanup removes before their jobs.
REPEAT_AFTER_CLEANUP: Responses = {
    410: refusal("What this Idempotency-Key made was removed: use a new key"),
}
