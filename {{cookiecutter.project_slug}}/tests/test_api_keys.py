"""API keys: with API_KEYS set, /api/v1 needs one of them; health stays open; /metrics
as configured; no key or password is ever written to a log or an answer."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy import make_url
{%- endif %}

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import free_port, start_service
from tests.test_emails import MESSAGE
from tests.test_logs import wait_until_finished

KEYS = [SecretStr("first-key-9f2c"), SecretStr("second-key-71ad")]


async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(settings.model_copy(update={"api_keys": KEYS})):
        yield client


async def test_the_api_needs_one_of_the_keys(guarded: httpx.AsyncClient) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"Authorization": "Bearer x"}):
        response = await guarded.get("/api/v1/jobs", headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == {"detail": "a valid API key is required in the X-API-Key header"}
        response = await guarded.post("/api/v1/emails", json=MESSAGE, headers=headers)
        assert response.status_code == 401
    for key in KEYS:
        response = await guarded.get("/api/v1/jobs", headers={"X-API-Key": key.get_secret_value()})
        assert response.status_code == 200
    # Refused before anything else: an unknown id is 401 too, not 404.
    response = await guarded.get(f"/api/v1/jobs/{uuid.uuid4()}")
    assert response.status_code == 401


async def test_health_and_metrics_stay_open_by_default(guarded: httpx.AsyncClient) -> None:
    expected = {
        "/health": 200,
{%- if cookiecutter.job_backend == "rq" %}
        "/health/ready": 503,  # no worker runs in this test; the answer says so
{%- else %}
        "/health/ready": 200,
{%- endif %}
        "/health/jobs": 200,
        "/metrics": 200,
    }
    for path, status in expected.items():
        response = await guarded.get(path)
        assert response.status_code == status, (path, response.text)


async def test_metrics_can_ask_for_a_key_too(settings: Settings) -> None:
    settings = settings.model_copy(update={"api_keys": KEYS, "metrics_require_api_key": True})
    async for client in serve(settings):
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"X-API-Key": "nope"})).status_code == 401
        key = KEYS[1].get_secret_value()
        assert (await client.get("/metrics", headers={"X-API-Key": key})).status_code == 200
        # The way Prometheus sends credentials.
        bearer = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/metrics", headers=bearer)).status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_an_open_api_is_warned_about_at_start(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async def start(settings: Settings) -> str:
        app: FastAPI = create_app(settings)  # its log lines go to the captured stderr
        async with app.router.lifespan_context(app):
            pass
        return capsys.readouterr().err

    warning = "API_KEYS is not set: /api/v1 is open to anyone who can reach it"
    assert warning in await start(settings)
    assert "API_KEYS" not in await start(settings.model_copy(update={"api_keys": KEYS}))


def test_no_secret_reaches_a_log_or_an_answer(settings: Settings, tmp_path: Path) -> None:
    smtp_password = "smtp-pass-5e1b"
    secrets = [key.get_secret_value() for key in KEYS] + [smtp_password]
    update: dict[str, object] = {
        "api_keys": KEYS,
        "log_level": "DEBUG",
        # An SMTP server that is not there: the job fails, and its error is logged.
        "email_backend": "smtp",
        "smtp_port": free_port(),
        "smtp_username": "mailer",
        "smtp_password": SecretStr(smtp_password),
        "email_max_attempts": 1,
    }
{%- if cookiecutter.database == "postgresql" %}
    # The test server trusts local connections, so a password in the URL is only carried.
    database_password = "db-pass-0c4d"
    secrets.append(database_password)
    url = make_url(settings.database_url).set(password=database_password)
    update["database_url"] = url.render_as_string(hide_password=False)
{%- endif %}
    settings = settings.model_copy(update=update)
    key = {"X-API-Key": KEYS[0].get_secret_value()}
    answers = []
    with start_service(settings, tmp_path) as service:
        web = service[0]
        sent = httpx.post(f"{web.url}/api/v1/emails", json=MESSAGE, headers=key)
        assert sent.status_code == 202, sent.text
        wait_until_finished(web.url, uuid.UUID(sent.json()["job_id"]), key)
        for response in (
            sent,
            httpx.get(f"{web.url}/api/v1/emails/{sent.json()['id']}", headers=key),
            httpx.get(f"{web.url}/api/v1/jobs/{sent.json()['job_id']}", headers=key),
            httpx.get(f"{web.url}/api/v1/jobs", headers={"X-API-Key": secrets[0] + "x"}),
            httpx.post(f"{web.url}/api/v1/emails", json={"to": 1}, headers=key),
            httpx.get(f"{web.url}/health/ready"),
            httpx.get(f"{web.url}/health/jobs"),
            httpx.get(f"{web.url}/metrics"),
        ):
            answers.append(f"{response.status_code} {response.headers} {response.text}")
        for process in service:
            assert process.terminate(timeout=30) == 0
    logs = "".join(process.output() for process in service)
    # The job did fail on the missing server, and said so in the log.
    assert "ConnectionRefusedError" in logs or "SMTPConnectError" in logs, logs
    for secret in secrets:
        assert secret not in logs
        assert not any(secret in answer for answer in answers)
