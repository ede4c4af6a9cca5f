"""The dashboard's pages, in process: what each shows, its filters and pages, its strict
Content-Security-Policy, the sign-in with API_KEYS and the refusal of cross-site POSTs.
tests/test_dashboard_browser.py drives the same pages in a real browser."""

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.models import Job, JobStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from tests.test_api_keys import KEYS

TRACEBACK = 'Traceback (most recent call last):\n  File "tasks.py"\nRuntimeError: disk full\n'


def finished(name: str, status: JobStatus, minutes_ago: float = 0, **fields: Any) -> Job:
    at = utcnow() - timedelta(minutes=minutes_ago)
    return Job(name=name, status=status, attempts=1, created_at=at, finished_at=at, **fields)


def failed(**fields: Any) -> Job:
    error: dict[str, Any] = {"error_type": "RuntimeError", "error_message": "disk full"}
    return finished("always_fail", JobStatus.FAILED, error_traceback=TRACEBACK, **error, **fields)


def delayed() -> Job:
    # Due in an hour: it stays queued while the test looks at it.
    return Job(name="add", arguments={"a": 1, "b": 2}, run_after=utcnow() + timedelta(hours=1))


async def add(sessionmaker: SessionMaker, *jobs: Job) -> list[uuid.UUID]:
    async with sessionmaker() as session:
        session.add_all(jobs)
        await session.commit()
        return [job.id for job in jobs]


async def status_of(sessionmaker: SessionMaker, job_id: uuid.UUID) -> JobStatus:
    async with sessionmaker() as session:
        job = await reads.get(session, job_id)
    assert job is not None
    return job.status


def job_links(page: str) -> list[str]:
    return re.findall(r'href="/dashboard/jobs/([0-9a-f-]{36})"', page)


async def test_every_page_sends_a_strict_content_security_policy(
    client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    [job_id] = await add(sessionmaker, failed())
    for path in ("", "/jobs", f"/jobs/{job_id}", "/schedules"):
        response = await client.get(f"/dashboard{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        # Open, like the API without keys, and saying so.
        assert "API_KEYS is not set" in response.text
    for asset, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")):
        response = await client.get(f"/dashboard/static/{asset}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)


async def test_the_overview_counts_by_status_and_task_and_charts_the_last_hour(
    client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    succeeded = [finished("add", JobStatus.SUCCEEDED, result=3) for _ in range(2)]
    earlier = finished("add", JobStatus.SUCCEEDED, minutes_ago=30.5)
    long_ago = finished("add", JobStatus.SUCCEEDED, minutes_ago=90)
    [failure, *_] = await add(sessionmaker, failed(), *succeeded, earlier, long_ago, delayed())
    page = (await client.get("/dashboard")).text
    tile = r"<span>{}</span><strong>{}</strong>"
    for status, count in (("succeeded", 4), ("failed", 1), ("queued", 1), ("running", 0)):
        assert re.search(tile.format(status, count), page), status
    # The delayed job is not due: nothing has waited.
    assert re.search(tile.format("oldest queued", r"0\.00 s"), page)
    assert re.search(tile.format("failed, last hour", 1), page)
    # By task: add has 1 queued, 0 running, 4 succeeded, 0 failed, 0 cancelled.
    counts = re.findall(r'<td class="number">(\d+)</td>', page.split("always_fail")[0])
    assert counts[-5:] == ["1", "0", "4", "0", "0"]
    # 60 bars, one a minute: the job of 90 minutes ago is in none of them.
    bars = re.findall(r"<title>(\d+) min ago: (\d+) succeeded, (\d+) failed</title>", page)
    assert len(bars) == 60
    assert [bar for bar in bars if bar[1:] != ("0", "0")] == [("30", "1", "0"), ("0", "2", "1")]
    # The failure, linked, with its error.
    assert str(failure) in job_links(page)
    assert "RuntimeError: disk full" in page
    assert "<h2>Executors alive</h2>" in page


async def test_the_jobs_list_filters_and_pages_newest_first(
    client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    older = [finished("add", JobStatus.SUCCEEDED, minutes_ago=n + 1) for n in range(55)]
    ids = await add(sessionmaker, *older, failed())
    first = (await client.get("/dashboard/jobs", params={"status": "succeeded"})).text
    assert job_links(first) == [str(job_id) for job_id in ids[:50]]
    assert 'href="/dashboard/jobs?status=succeeded&amp;page=2" rel="next"' in first
    second = (await client.get("/dashboard/jobs?status=succeeded&page=2")).text
    assert job_links(second) == [str(job_id) for job_id in ids[50:55]]
    assert 'rel="next"' not in second
    assert 'href="/dashboard/jobs?status=succeeded" rel="prev"' in second
    by_task = (await client.get("/dashboard/jobs", params={"name": "always_fail"})).text
    assert job_links(by_task) == [str(ids[-1])]
    # The filter form's empty choice means any.
    everything = (await client.get("/dashboard/jobs?status=&name=")).text
    assert job_links(everything)[0] == str(ids[-1])
    for bad in ("status=lost", "page=0", "name=%00"):
        assert (await client.get(f"/dashboard/jobs?{bad}")).status_code == 422, bad


async def test_a_jobs_page_shows_its_arguments_error_and_traceback(
    client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    [job_id] = await add(sessionmaker, failed(arguments={"message": "disk <full>"}))
    page = (await client.get(f"/dashboard/jobs/{job_id}")).text
    # Escaped wherever a job's data shows.
    assert "disk \\u003cfull\\u003e" in page
    assert "<full>" not in page
    assert '<p class="error">RuntimeError: disk full</p>' in page
    assert "Traceback (most recent call last):\n  File &#34;tasks.py&#34;" in page
    assert f'action="/dashboard/jobs/{job_id}/retry"' in page
    assert "/cancel" not in page
    assert (await client.get(f"/dashboard/jobs/{uuid.uuid4()}")).status_code == 404


async def test_cancel_and_retry_take_posts_from_the_dashboard_only(
    client: httpx.AsyncClient, sessionmaker: SessionMaker
) -> None:
    waiting, failure = await add(sessionmaker, delayed(), failed())
    for other_site in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        for job_id, action in ((waiting, "cancel"), (failure, "retry")):
            response = await client.post(f"/dashboard/jobs/{job_id}/{action}", headers=other_site)
            assert response.status_code == 403
            assert response.json() == {"detail": "a cross-site request is refused"}
    assert await status_of(sessionmaker, waiting) == JobStatus.QUEUED
    assert await status_of(sessionmaker, failure) == JobStatus.FAILED

    own = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    response = await client.post(f"/dashboard/jobs/{waiting}/cancel", headers=own)
    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard/jobs/{waiting}"
    assert await status_of(sessionmaker, waiting) == JobStatus.CANCELLED
    response = await client.post(
        f"/dashboard/jobs/{failure}/retry", headers={"Origin": "http://127.0.0.1"}
    )
    assert response.status_code == 303
    assert await status_of(sessionmaker, failure) != JobStatus.FAILED
    # Pressed twice (a finished job): the page shows the job as it is.
    response = await client.post(f"/dashboard/jobs/{waiting}/cancel", headers=own)
    assert response.status_code == 303


@pytest.fixture
async def guarded_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"api_keys": KEYS}))
    async with app.router.lifespan_context(app):
        yield app


async def test_with_api_keys_nothing_of_a_job_shows_before_a_key_is_given(
    guarded_app: FastAPI,
) -> None:
    [job_id] = await add(guarded_app.state.sessionmaker, failed())
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        for path in ("", "/jobs", f"/jobs/{job_id}", "/schedules"):
            response = await browser.get(f"/dashboard{path}")
            assert response.status_code == 303
            assert response.headers["location"] == "/dashboard/login"
            assert str(job_id) not in response.text
        response = await browser.post(f"/dashboard/jobs/{job_id}/retry")
        assert response.status_code == 303
        assert await status_of(guarded_app.state.sessionmaker, job_id) == JobStatus.FAILED

        form = await browser.get("/dashboard/login")
        assert form.status_code == 200
        assert 'name="key" type="password"' in form.text
        refused = await browser.post("/dashboard/login", data={"key": "wrong"})
        assert refused.status_code == 401
        assert "That key is not one of API_KEYS." in refused.text
        assert "set-cookie" not in refused.headers

        signed_in = await browser.post("/dashboard/login", data={"key": KEYS[1].get_secret_value()})
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/dashboard"
        cookie = signed_in.headers["set-cookie"]
        for part in ("dashboard_session=", "HttpOnly", "Path=/dashboard", "SameSite=strict"):
            assert part in cookie
        page = await browser.get(f"/dashboard/jobs/{job_id}")
        assert page.status_code == 200
        assert str(job_id) in page.text
        assert "Sign out" in page.text
        assert "API_KEYS is not set" not in page.text

        # A cookie not signed with these keys is no session.
        session = browser.cookies["dashboard_session"]
        # One character of the signature changed (not its last: base64's last character
        # may carry padding bits, and "xx" may be what it ends with already).
        at = len(session) - 5
        altered = session[:at] + ("A" if session[at] != "A" else "B") + session[at + 1 :]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as forger:
            for forged in (altered, "operator", ""):
                headers = {"Cookie": f"dashboard_session={forged}"}
                assert (await forger.get("/dashboard", headers=headers)).status_code == 303

        signed_out = await browser.post("/dashboard/logout")
        assert signed_out.status_code == 303
        assert (await browser.get("/dashboard")).status_code == 303
