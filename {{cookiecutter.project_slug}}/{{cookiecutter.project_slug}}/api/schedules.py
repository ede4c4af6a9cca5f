"""The schedules of the registered tasks, with their fire times: `/api/v1/schedules`."""

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import SessionDep
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.registry import schedules
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings

router = APIRouter(prefix=f"{API_PREFIX}/schedules", tags=["schedules"])


class SchedulePublic(BaseModel):
    id: str
    task: str
    cron: str
    timezone: str
    arguments: dict[str, Any]
    # The latest fire time up to now, and the job it made (none if it was skipped or is
    # about to be enqueued); then the next one. Database time.
    last_fire_at: datetime | None
    last_job_id: uuid.UUID | None
    last_job_status: JobStatus | None
    next_fire_at: datetime | None

    @classmethod
    def of(cls, state: reads.ScheduleState) -> "SchedulePublic":
        schedule, job = state.schedule, state.last_job
        return cls(
            id=schedule.id,
            task=schedule.task.name,
            cron=schedule.cron.expression,
            timezone=schedule.cron.timezone,
            arguments=schedule.cron.arguments,
            last_fire_at=state.last_fire_at,
            last_job_id=None if job is None else job.id,
            last_job_status=None if job is None else job.status,
            next_fire_at=state.next_fire_at,
        )


@router.get("")
async def list_schedules(request: Request, session: SessionDep) -> list[SchedulePublic]:
    """Every schedule in the code, by id."""
    settings: Settings = request.app.state.settings
    states = await reads.schedule_states(session, schedules(settings))
    return [SchedulePublic.of(state) for state in states]
