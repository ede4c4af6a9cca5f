"""Emails: stored first, then sent by a job. `/api/v1/emails`."""

import uuid
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import JobControlDep, SessionDep
from {{ cookiecutter.project_slug }}.api.fields import NO_NUL, ONE_LINE, EmailAddress
from {{ cookiecutter.project_slug }}.api.idempotency import IdempotencyKey, scoped, start
from {{ cookiecutter.project_slug }}.api.responses import refusal
from {{ cookiecutter.project_slug }}.models import Email, EmailStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.tasks.emails import send_email

router = APIRouter(prefix=f"{API_PREFIX}/emails", tags=["emails"])


class EmailCreate(BaseModel):
    to: EmailAddress
    subject: str = Field(min_length=1, max_length=255, pattern=ONE_LINE)
    body: str = Field(max_length=100_000, pattern=NO_NUL)


class EmailAccepted(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    status: EmailStatus


class EmailPublic(EmailAccepted):
    to: str
    subject: str
    error: str | None
    created_at: datetime
    sent_at: datetime | None


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def create_email(
    payload: EmailCreate,
    request: Request,
    session: SessionDep,
    control: JobControlDep,
    idempotency_key: IdempotencyKey = None,
) -> EmailAccepted:
    """Store the email, then send it in the background."""
    settings: Settings = request.app.state.settings
    email = Email(**payload.model_dump())
    job = send_email.new_job(
        email_id=str(email.id),
        idempotency_key=scoped("emails", idempotency_key),
        max_attempts=settings.email_max_attempts,
    )
    email, job = await start(session, control, email, job)
    return EmailAccepted(id=email.id, job_id=job.id, status=email.status)


@router.get("/{email_id}", responses={404: refusal("No email with this id")})
async def get_email(email_id: uuid.UUID, session: SessionDep) -> EmailPublic:
    email = await session.get(Email, email_id)
    if email is None or email.job_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no email with id {email_id}")
    return EmailPublic(
        id=email.id,
        job_id=email.job_id,
        status=email.status,
        to=email.to,
        subject=email.subject,
        error=email.error,
        created_at=email.created_at,
        sent_at=email.sent_at,
    )
