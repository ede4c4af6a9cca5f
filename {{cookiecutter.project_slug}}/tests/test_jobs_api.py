"""`/api/v1/jobs`: listing, status, and clear 4xx answers for what cannot be done."""
{% if cookiecutter.job_backend == "aiojobs" %}
import asyncio
import time
{%- endif %}
import uuid

import httpx
{%- if cookiecutter.job_backend == "aiojobs" %}
import pytest
{%- endif %}

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
{%- if cookiecutter.job_backend == "aiojobs" %}
from {{ cookiecutter.project_slug }}.jobs.errors import JobsUnavailable
from {{ cookiecutter.project_slug }}.main import create_app
{%- endif %}
from {{ cookiecutter.project_slug }}.models import JobStatus
{%- if cookiecutter.job_backend == "aiojobs" %}
from {{ cookiecutter.project_slug }}.settings import Settings
{%- endif %}
from tests import tasks
from tests.test_jobs import FINISHED, submit, wait_for


async def test_jobs_are_listed_newest_first_and_filtered(
    control: JobControl, sessionmaker: SessionMaker, client: httpx.AsyncClient
) -> None:
    added = [await submit(control, sessionmaker, tasks.add.new_job(a=n, b=0)) for n in range(3)]
    failing = await submit(control, sessionmaker, tasks.always_fail.new_job(message="no"))
    for job in [*added, failing]:
        await wait_for(control, job.id, *FINISHED)

    listed = (await client.get("/api/v1/jobs")).json()
    assert [job["id"] for job in listed] == [str(j.id) for j in reversed([*added, failing])]
    assert set(listed[0]) == {
        "id",
        "name",
        "status",
        "attempts",
        "max_attempts",
        "lost_attempts",
        "progress",
        "progress_message",
        "result",
        "error",
        "created_at",
        "run_after",
        "started_at",
        "finished_at",
    }
    assert listed[0]["error"] == {"type": "RuntimeError", "message": "no"}

    params: dict[str, str | int] = {"name": "add", "limit": 2, "offset": 1}
    page = (await client.get("/api/v1/jobs", params=params)).json()
    assert [job["result"] for job in page] == [1, 0]
    failed = (await client.get("/api/v1/jobs", params={"status": "failed"})).json()
    assert [job["id"] for job in failed] == [str(failing.id)]


async def test_unknown_and_malformed_ids_get_404_and_422(client: httpx.AsyncClient) -> None:
    for path in ("", "/cancel", "/retry"):
        method = client.get if path == "" else client.post
        unknown = await method(f"/api/v1/jobs/{uuid.uuid4()}{path}")
        assert unknown.status_code == 404, unknown.text
        assert "no job with id" in unknown.json()["detail"]
        malformed = await method(f"/api/v1/jobs/not-a-uuid{path}")
        assert malformed.status_code == 422, malformed.text


async def test_bad_list_parameters_get_422(client: httpx.AsyncClient) -> None:
    huge = 10**25
    for params in (
        {"status": "lost"},
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": huge},
        {"name": "nul\x00"},
        # Whole numbers in digits only, as the schema says: pydantic alone reads these.
        {"offset": "+1"},
        {"offset": "1.0"},
        {"limit": "1_0"},
        {"limit": " 5"},
    ):
        response = await client.get("/api/v1/jobs", params=params)
        assert response.status_code == 422, params


async def test_a_list_parameter_given_twice_gets_422_naming_it(client: httpx.AsyncClient) -> None:
    # FastAPI alone would take the last value.
    for path in ("/api/v1/jobs", "/api/v1/documents"):
        response = await client.get(f"{path}?limit=5&offset=1&offset=2")
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "offset"]
    assert (await client.get("/api/v1/jobs?limit=5&offset=1")).status_code == 200


async def test_finished_jobs_cannot_be_cancelled_and_succeeded_ones_not_retried(
    control: JobControl, sessionmaker: SessionMaker, client: httpx.AsyncClient
) -> None:
    job = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=1))
    assert (await wait_for(control, job.id, *FINISHED)).status == JobStatus.SUCCEEDED
    cancel = await client.post(f"/api/v1/jobs/{job.id}/cancel")
    assert cancel.status_code == 409
    assert "succeeded" in cancel.json()["detail"]
    retry = await client.post(f"/api/v1/jobs/{job.id}/retry")
    assert retry.status_code == 409
    assert "only failed or cancelled jobs" in retry.json()["detail"]
{%- if cookiecutter.job_backend == "aiojobs" %}


async def test_past_the_pending_limit_jobs_wait_in_the_table_and_start_as_slots_free(
    settings: Settings,
) -> None:
    # Polls 30 s apart: only the backend's wake-up as slots free can start them in time.
    limits = {"job_concurrency": 1, "job_pending_limit": 2, "job_poll_seconds": 30}
    app = create_app(settings.model_copy(update=limits))
    async with app.router.lifespan_context(app):
        control: JobControl = app.state.job_control
        sessionmaker: SessionMaker = app.state.sessionmaker
        jobs = [await submit(control, sessionmaker, tasks.add.new_job(a=n, b=1)) for n in range(20)]
        for n, job in enumerate(jobs):
            done = await wait_for(control, job.id, *FINISHED, within=10)
            assert (done.status, done.result) == (JobStatus.SUCCEEDED, n + 1)


async def test_past_the_backlog_limit_submitting_answers_503_instead_of_waiting(
    settings: Settings,
) -> None:
    limits = {"job_concurrency": 1, "job_pending_limit": 1, "job_backlog_limit": 4}
    app = create_app(settings.model_copy(update=limits))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        control: JobControl = app.state.job_control
        sessionmaker: SessionMaker = app.state.sessionmaker
        cancelled = tasks.add.new_job(a=1, b=1)
        cancelled.status = JobStatus.CANCELLED
        async with sessionmaker() as session:
            session.add(cancelled)
            await session.commit()

        await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))  # runs
        await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))  # waits for the slot
        # Past the pending limit, yet accepted: queued in the table.
        left = [await submit(control, sessionmaker, tasks.add.new_job(a=n, b=1)) for n in range(3)]
        assert [(await control.get(job.id)).status for job in left] == [JobStatus.QUEUED] * 3
        # 4 due jobs wait now (the pending nap and the 3), counted within a poll interval.
        deadline = time.monotonic() + 5
        while True:
            try:
                control.backend.check_accepting()
            except JobsUnavailable:
                break
            assert time.monotonic() < deadline, "the backlog limit never refused a job"
            await asyncio.sleep(0.05)
        retry = await client.post(f"/api/v1/jobs/{cancelled.id}/retry")
        assert retry.status_code == 503
        assert retry.headers["Retry-After"].isdigit()
        assert "4 jobs are due and waiting already" in retry.json()["detail"]
        with pytest.raises(JobsUnavailable):
            await submit(control, sessionmaker, tasks.add.new_job(a=1, b=1))
        assert (await control.get(cancelled.id)).status == JobStatus.CANCELLED
{%- endif %}
