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
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
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
{%- if cookiecutter.job_backend in ("rq", "celery") %}
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


async def test_without_keys_only_loopback_is_served_unless_opened_on_purpose(
    settings: Settings,
) -> None:
    """A container, or `--host 0.0.0.0`, is not open by accident: without API_KEYS a
    request from beyond this machine, or through a proxy, is refused with the variable to
    set; ALLOW_OPEN_API=true opens the API to everyone."""
    refusal = (
        "API_KEYS is not set, so this service answers only on loopback: "
        "set API_KEYS, or ALLOW_OPEN_API=true to serve everyone who can reach it"
    )

    async def ask(settings: Settings, client: str, server: str, **headers: str) -> list[int]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(client, 40000))
            async with httpx.AsyncClient(transport=transport, base_url=server) as http:
                answers = [
                    await http.get("/api/v1/jobs", headers=headers),
                    await http.post("/api/v1/emails", json=MESSAGE, headers=headers),
                    await http.get("/dashboard", headers=headers),
                ]
        for answer in answers:
            if answer.status_code == 403:
                assert answer.json() == {"detail": refusal}
        return [answer.status_code for answer in answers]

    local, beyond = "http://127.0.0.1", "http://192.0.2.10"
    assert await ask(settings, "127.0.0.1", local) == [200, 202, 200]
    assert await ask(settings, "::1", "http://[::1]") == [200, 202, 200]
    assert await ask(settings, "198.51.100.7", beyond) == [403, 403, 403]
    # Through a proxy on the same machine, every client looks local: refused too.
    proxied = {"X-Forwarded-For": "198.51.100.7"}
    assert await ask(settings, "127.0.0.1", local, **proxied) == [403, 403, 403]
    opened = settings.model_copy(update={"allow_open_api": True})
    assert await ask(opened, "198.51.100.7", beyond) == [200, 202, 200]
    # With keys, a key decides, wherever the request comes from.
    keyed = settings.model_copy(update={"api_keys": KEYS})
    key = KEYS[0].get_secret_value()
    answers = await ask(keyed, "198.51.100.7", beyond, **{"X-API-Key": key})
    assert answers[:2] == [200, 202]
    # The schema says which refusal each set-up makes, for generated clients.
    expected: list[tuple[Settings, set[str]]] = [
        (settings, {"403"}),
        (keyed, {"401"}),
        (opened, set()),
    ]
    for configured, refusals in expected:
        documented = create_app(configured).openapi()["paths"]["/api/v1/jobs"]["get"]
        assert {"401", "403"} & set(documented["responses"]) == refusals


async def test_how_open_the_api_is_is_said_at_start(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async def start(settings: Settings) -> str:
        app: FastAPI = create_app(settings)  # its log lines go to the captured stderr
        async with app.router.lifespan_context(app):
            pass
        return capsys.readouterr().err

    loopback = "API_KEYS is not set: /api/v1 and /dashboard answer on loopback only"
    assert loopback in await start(settings)
    opened = settings.model_copy(update={"allow_open_api": True})
    assert "ALLOW_OPEN_API=true: /api/v1 is open to anyone who can reach it" in await start(opened)
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
