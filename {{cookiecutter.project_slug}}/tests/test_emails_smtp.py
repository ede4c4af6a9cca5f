"""Emails through a real SMTP server on 127.0.0.1: delivered once; when the server is
down, retried, then failed with a clear error."""

import email
import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.tasks.emails import MESSAGE_ID_DOMAIN
from tests.processes import free_port
from tests.test_emails import MESSAGE
from tests.test_jobs import FINISHED, wait_for


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append(email.message_from_bytes(content))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1, collecting what it receives."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=free_port())
        self.port: int = self._controller.port
        self._controller.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._controller.stop()
            self.running = False


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={
            "email_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server.port,
            "email_max_attempts": 2,
        }
    )


async def test_smtp_delivers_once_then_a_down_server_fails_the_email_after_a_retry(
    control: JobControl, client: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    inbox = smtp_server.inbox
    accepted = (await client.post("/api/v1/emails", json=MESSAGE)).json()
    sent = await wait_for(control, uuid.UUID(accepted["job_id"]), *FINISHED)
    assert sent.status == JobStatus.SUCCEEDED
    assert len(inbox.messages) == 1
    received = inbox.messages[0]
    assert (received["To"], received["Subject"]) == ("ada@example.com", "Welcome")
    assert received["Message-ID"] == f"<{uuid.UUID(accepted['id']).hex}@{MESSAGE_ID_DOMAIN}>"
    assert "Hello, Ada." in received.as_string()

    smtp_server.stop()
    down = (await client.post("/api/v1/emails", json=MESSAGE)).json()
    job = await wait_for(control, uuid.UUID(down["job_id"]), *FINISHED)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    shown = (await client.get(f"/api/v1/emails/{down['id']}")).json()
    assert shown["status"] == "failed"
    assert shown["error"].startswith("SMTPConnectError")
    assert len(inbox.messages) == 1
