"""Reports: a CSV built by a job, downloaded when ready. `/api/v1/reports`."""

import uuid
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import JobControlDep, SessionDep
from {{ cookiecutter.project_slug }}.api.fields import IsoDate
from {{ cookiecutter.project_slug }}.api.idempotency import (
    REPEAT_AFTER_CLEANUP,
    IdempotencyKey,
    scoped,
    start,
)
from {{ cookiecutter.project_slug }}.api.responses import Responses, refusal
from {{ cookiecutter.project_slug }}.models import Report, ReportStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.storage import Storage
from {{ cookiecutter.project_slug }}.tasks.reports import ReportKind, build_report

router = APIRouter(prefix=f"{API_PREFIX}/reports", tags=["reports"])
NOT_FOUND: Responses = {404: refusal("No report with this id")}


class ReportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: IsoDate | None = Field(default=None, description="first day counted (UTC)")
    until: IsoDate | None = Field(default=None, description="last day counted (UTC)")


class ReportCreate(BaseModel):
    kind: ReportKind
    filters: ReportFilters = Field(default_factory=ReportFilters)


class ReportAccepted(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    status: ReportStatus


class ReportPublic(ReportAccepted):
    kind: str
    filters: dict[str, Any]
    error: str | None
    created_at: datetime
    completed_at: datetime | None


async def find(session: AsyncSession, report_id: uuid.UUID) -> Report:
    report = await session.get(Report, report_id)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report with id {report_id}")
    return report


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=REPEAT_AFTER_CLEANUP)
async def create_report(
    payload: ReportCreate,
    session: SessionDep,
    control: JobControlDep,
    idempotency_key: IdempotencyKey = None,
) -> ReportAccepted:
    """Build the report in the background; download it when its status is `ready`."""
    filters = payload.filters.model_dump(mode="json", exclude_none=True)
    report = Report(kind=payload.kind, filters=filters)
    job = build_report.new_job(
        report_id=str(report.id), idempotency_key=scoped("reports", idempotency_key)
    )
    report, job = await start(session, control, report, job)
    return ReportAccepted(id=report.id, job_id=job.id, status=report.status)


@router.get("/{report_id}", responses=NOT_FOUND)
async def get_report(report_id: uuid.UUID, session: SessionDep) -> ReportPublic:
    return ReportPublic.model_validate(await find(session, report_id), from_attributes=True)


@router.get(
    "/{report_id}/download",
    response_class=FileResponse,
    responses={
        200: {"description": "The report", "content": {"text/csv": {}}},
        **NOT_FOUND,
        409: refusal("Not ready yet"),
    },
)
async def download_report(
    report_id: uuid.UUID, request: Request, session: SessionDep
) -> FileResponse:
    report = await find(session, report_id)
    if report.status != ReportStatus.READY or report.stored_name is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"report {report_id} is {report.status}")
    settings: Settings = request.app.state.settings
    path = Storage(settings.storage_dir).path("reports", report.stored_name)
    if not await anyio.Path(path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the file of report {report_id} is gone")
    return FileResponse(path, media_type="text/csv", filename=f"{report.kind}-{report.id}.csv")
