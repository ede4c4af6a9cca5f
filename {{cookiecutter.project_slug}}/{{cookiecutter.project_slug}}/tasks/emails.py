"""Sending an email, tracked by its row: queued, then sent or failed."""

import logging
import uuid
from email.message import EmailMessage

import aiosmtplib

from {{ cookiecutter.project_slug }}.jobs.registry import JobContext, Row, task
from {{ cookiecutter.project_slug }}.models import Email, EmailStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

MESSAGE_ID_DOMAIN = "{{ cookiecutter.project_slug }}.invalid"


def compose(email: Email, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = email.to
    message["Subject"] = email.subject
    # The same Message-ID on every attempt lets mail servers drop a duplicate, should a
    # retry follow a send whose success was never recorded.
    message["Message-ID"] = f"<{email.id.hex}@{MESSAGE_ID_DOMAIN}>"
    message.set_content(email.body)
    return message


async def deliver(email: Email, settings: Settings) -> None:
    if settings.email_backend == "console":
        # The fields as stored: composing a MIME message costs more than the request that
        # stored them, and only SMTP needs one.
        logger.info("email to %s: %s\n\n%s", email.to, email.subject, email.body)
        return
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    await aiosmtplib.send(
        compose(email, settings),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=password,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls",
        timeout=settings.smtp_timeout_seconds,
    )


EMAIL_ROW = Row(
    Email,
    unfinished=(EmailStatus.QUEUED,),
    failed=EmailStatus.FAILED,
    cancelled=EmailStatus.CANCELLED,
)


@task(timeout_seconds=120, max_attempts=5, backoff_seconds=2.0, row=EMAIL_ROW)
async def send_email(ctx: JobContext, email_id: str) -> dict[str, str]:
    email = await ctx.session.get(Email, uuid.UUID(email_id))
    if email is None:
        raise LookupError(f"email {email_id} does not exist")
    if email.status == EmailStatus.SENT:
        return {"status": "already sent"}  # a rerun after the send was recorded
    await deliver(email, ctx.settings)
    email.status, email.sent_at, email.error = EmailStatus.SENT, utcnow(), None
    await ctx.session.commit()
    return {"status": "sent"}
