"""The schedules of the registered tasks, with their fire times: `/api/v1/schedules`."""

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import SessionDep
from {{ cookiecutter.project_slug }}.jobs import moves, reads
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


@router.get("")
async def list_schedules(request: Request, session: SessionDep) -> list[SchedulePublic]:
    """Every schedule in the code, by task name."""
    settings: Settings = request.app.state.settings
    now, listed = await reads.database_time(session), []
    for schedule in sorted(schedules(settings), key=lambda s: s.id):
        last = schedule.cron.last_fire(now)
        job = None if last is None else await moves.find_by_key(session, schedule.key(last))
        listed.append(
            SchedulePublic(
                id=schedule.id,
                task=schedule.task.name,
                cron=schedule.cron.expression,
                timezone=schedule.cron.timezone,
                arguments=schedule.cron.arguments,
                last_fire_at=last,
                last_job_id=None if job is None else job.id,
                last_job_status=None if job is None else job.status,
                next_fire_at=schedule.cron.next_fire(now),
            )
        )
    return listed
