"""Batches: a list of items processed by a job, with progress. `/api/v1/batches`."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import JobControlDep, SessionDep
from {{ cookiecutter.project_slug }}.api.errors import invalid
from {{ cookiecutter.project_slug }}.api.fields import NO_NUL
from {{ cookiecutter.project_slug }}.api.idempotency import IdempotencyKey, scoped, start
from {{ cookiecutter.project_slug }}.api.responses import refusal
from {{ cookiecutter.project_slug }}.models import Batch, BatchItems, BatchStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.tasks.batches import process_batch

router = APIRouter(prefix=f"{API_PREFIX}/batches", tags=["batches"])


class BatchCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    items: Annotated[list[Any], Field(min_length=1)]


class BatchAccepted(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    status: BatchStatus


class BatchPublic(BatchAccepted):
    name: str
    total_items: int
    processed_items: int
    failed_items: int
    failures: list[dict[str, Any]]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def create_batch(
    payload: BatchCreate,
    request: Request,
    session: SessionDep,
    control: JobControlDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchAccepted:
    """Store the items (at most MAX_BATCH_ITEMS), then process them in the background."""
    settings: Settings = request.app.state.settings
    if len(payload.items) > settings.max_batch_items:
        message = f"{len(payload.items)} items: at most {settings.max_batch_items} per batch"
        raise invalid(("body", "items"), message, "too_long")
    batch = Batch(name=payload.name, total_items=len(payload.items))
    session.add(BatchItems(batch_id=batch.id, items=payload.items))
    job = process_batch.new_job(
        batch_id=str(batch.id), idempotency_key=scoped("batches", idempotency_key)
    )
    batch, job = await start(session, control, batch, job)
    return BatchAccepted(id=batch.id, job_id=job.id, status=batch.status)


@router.get("/{batch_id}", responses={404: refusal("No batch with this id")})
async def get_batch(batch_id: uuid.UUID, session: SessionDep) -> BatchPublic:
    batch = await session.get(Batch, batch_id)
    if batch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch with id {batch_id}")
    return BatchPublic.model_validate(batch, from_attributes=True)
