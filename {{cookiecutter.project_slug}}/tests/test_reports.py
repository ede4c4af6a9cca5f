"""`/api/v1/reports`: a CSV built by a job; 409 until it is ready."""

import uuid

import httpx

from {{ cookiecutter.project_slug }}.api.idempotency import PURGED
from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Report
from tests.test_documents import upload
from tests.test_jobs import FINISHED, wait_for


async def test_a_report_counts_documents_by_day_and_status(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    for name in ("a.txt", "b.txt"):
        document = (await upload(client, name, b"words")).json()
        await wait_for(control, uuid.UUID(document["job_id"]), *FINISHED)
    kind = {"kind": "documents_by_status_and_day"}
    response = await client.post("/api/v1/reports", json=kind)
    assert response.status_code == 202, response.text
    report = response.json()
    await wait_for(control, uuid.UUID(report["job_id"]), *FINISHED)
    shown = (await client.get(f"/api/v1/reports/{report['id']}")).json()
    assert shown["status"] == "ready"
    download = await client.get(f"/api/v1/reports/{report['id']}/download")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    header, *rows = download.text.splitlines()
    assert header == "day,status,count"
    assert [row.split(",")[1:] for row in rows] == [["ready", "2"]]


async def test_a_report_not_ready_gets_409_and_bad_requests_4xx(
    client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    queued = Report(kind="batches_by_status_and_day", job_id=uuid.uuid4())
    async with sessionmaker() as session:
        session.add(queued)
        await session.commit()
    download = await client.get(f"/api/v1/reports/{queued.id}/download")
    assert download.status_code == 409
    assert "is queued" in download.json()["detail"]
    for bad in (
        {"kind": "everything"},
        {"kind": "batches_by_status_and_day", "filters": {"since": "yesterday"}},
        {"kind": "batches_by_status_and_day", "filters": {"until": 20240131}},
        {"kind": "batches_by_status_and_day", "filters": {"colour": "red"}},
    ):
        assert (await client.post("/api/v1/reports", json=bad)).status_code == 422, bad
    unknown = uuid.uuid4()
    assert (await client.get(f"/api/v1/reports/{unknown}")).status_code == 404
    assert (await client.get(f"/api/v1/reports/{unknown}/download")).status_code == 404


async def test_one_report_per_idempotency_key(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "monthly"}
    body = {"kind": "batches_by_status_and_day"}
    first, again = [
        (await client.post("/api/v1/reports", json=body, headers=headers)).json() for _ in range(2)
    ]
    assert (again["id"], again["job_id"]) == (first["id"], first["job_id"])
    await wait_for(control, uuid.UUID(first["job_id"]), *FINISHED)


async def test_a_key_repeated_after_the_cleanup_removed_its_report_answers_410(
    control: JobControl, client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    """Reports go after REPORT_RETENTION_DAYS, their jobs after JOB_RETENTION_DAYS: a key
    repeated in between finds its job and no report."""
    headers = {"Idempotency-Key": "quarterly"}
    body = {"kind": "batches_by_status_and_day"}
    first = (await client.post("/api/v1/reports", json=body, headers=headers)).json()
    await wait_for(control, uuid.UUID(first["job_id"]), *FINISHED)
    async with sessionmaker() as session:  # as the cleanup removes it
        await session.delete(await session.get(Report, uuid.UUID(first["id"])))
        await session.commit()
    again = await client.post("/api/v1/reports", json=body, headers=headers)
    assert again.status_code == 410, again.text
    assert again.json() == {"detail": PURGED}
    fresh = await client.post("/api/v1/reports", json=body, headers={"Idempotency-Key": "q2"})
    assert fresh.status_code == 202
