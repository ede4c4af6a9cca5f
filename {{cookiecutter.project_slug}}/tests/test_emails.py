"""`/api/v1/emails`: stored first, sent by a job, one email per idempotency key."""

import asyncio
import uuid

import httpx
from sqlmodel import func, select

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Email, JobStatus
from tests.test_jobs import FINISHED, wait_for

MESSAGE = {"to": "ada@example.com", "subject": "Welcome", "body": "Hello, Ada."}


async def test_an_email_is_stored_then_sent(control: JobControl, client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/emails", json=MESSAGE)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"id", "job_id", "status"}
    job = await wait_for(control, uuid.UUID(accepted["job_id"]), *FINISHED)
    assert job.status == JobStatus.SUCCEEDED
    shown = (await client.get(f"/api/v1/emails/{accepted['id']}")).json()
    assert (shown["status"], shown["to"], shown["error"]) == ("sent", "ada@example.com", None)
    assert shown["sent_at"] is not None


async def test_one_idempotency_key_makes_one_email_even_under_concurrency(
    control: JobControl, client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    headers = {"Idempotency-Key": f"welcome-{uuid.uuid4()}"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/emails", json=MESSAGE, headers=headers) for _ in range(20))
    )
    assert {response.status_code for response in responses} == {202}
    assert len({(r.json()["id"], r.json()["job_id"]) for r in responses}) == 1
    again = await client.post("/api/v1/emails", json={**MESSAGE, "body": "Other"}, headers=headers)
    assert again.json()["id"] == responses[0].json()["id"]
    async with sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(Email))).one() == 1
    await wait_for(control, uuid.UUID(again.json()["job_id"]), *FINISHED)


async def test_bad_emails_get_422_and_unknown_ids_404(client: httpx.AsyncClient) -> None:
    for bad in (
        {**MESSAGE, "to": "not an address"},
        {**MESSAGE, "subject": ""},
        {**MESSAGE, "subject": "Hi\r\nBcc: everyone@example.com"},
        # Line breaks beyond CR and LF: the email module would refuse them at sending.
        *({**MESSAGE, "subject": f"Hi{line_break}there"} for line_break in "\v\f\x1c\x85\u2028"),
        {**MESSAGE, "body": "nul \u0000 byte"},
        {"to": "ada@example.com"},
        {**MESSAGE, "body": 42},
    ):
        response = await client.post("/api/v1/emails", json=bad)
        assert response.status_code == 422, bad
    too_long_key = {"Idempotency-Key": "k" * 201}
    response = await client.post("/api/v1/emails", json=MESSAGE, headers=too_long_key)
    assert response.status_code == 422
    assert (await client.get(f"/api/v1/emails/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/v1/emails/not-a-uuid")).status_code == 422
