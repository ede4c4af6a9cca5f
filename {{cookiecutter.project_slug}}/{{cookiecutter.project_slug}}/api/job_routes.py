"""Job status, cancellation and retry: `/api/v1/jobs`."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import JobControlDep, SessionDep
from {{ cookiecutter.project_slug }}.api.fields import NO_NUL, Limit, Offset, one_value_each
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.models import Job, JobStatus

router = APIRouter(prefix=f"{API_PREFIX}/jobs", tags=["jobs"])


class JobError(BaseModel):
    type: str
    message: str


class JobPublic(BaseModel):
    """A job as clients see it: no lease or other bookkeeping."""

    id: uuid.UUID
    name: str
    status: JobStatus
    attempts: int
    max_attempts: int
    # Of the attempts, those cut short by their process dying: not counted against
    # max_attempts.
    lost_attempts: int
    progress: float
    progress_message: str | None
    result: Any
    error: JobError | None
    created_at: datetime
    # Due from this time on: later than created_at for a delayed job or a retry.
    run_after: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> "JobPublic":
        error = None
        if job.error_type is not None:
            error = JobError(type=job.error_type, message=job.error_message or "")
        return cls(error=error, **job.model_dump(include=set(cls.model_fields) - {"error"}))


@router.get("", dependencies=[Depends(one_value_each)])
async def list_jobs(
    session: SessionDep,
    status: JobStatus | None = None,
    name: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> list[JobPublic]:
    """Jobs, newest first, optionally of one status and one task name."""
    jobs = await reads.page(session, status=status, name=name, limit=limit, offset=offset)
    return [JobPublic.of(job) for job in jobs]


@router.get("/{job_id}", responses={404: {"description": "No job with this id"}})
async def get_job(job_id: uuid.UUID, control: JobControlDep) -> JobPublic:
    return JobPublic.of(await control.get(job_id))


@router.post(
    "/{job_id}/cancel",
    responses={404: {"description": "No job with this id"}, 409: {"description": "Finished"}},
)
async def cancel_job(job_id: uuid.UUID, control: JobControlDep) -> JobPublic:
    """Cancel a queued job, or stop a running one (within a few seconds)."""
    return JobPublic.of(await control.cancel(job_id))


@router.post(
    "/{job_id}/retry",
    responses={
        404: {"description": "No job with this id"},
        409: {"description": "Not failed or cancelled"},
    },
)
async def retry_job(job_id: uuid.UUID, control: JobControlDep) -> JobPublic:
    """Run a failed or cancelled job again: same id, attempts counted from zero."""
    return JobPublic.of(await control.retry(job_id))
