"""Liveness, readiness and the state of the job queue, as a load balancer or an operator
sees them."""
{% if cookiecutter.job_backend not in ("rq", "celery") %}
import os
{%- endif %}
import socket
from collections.abc import AsyncIterator
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from contextlib import ExitStack
{%- endif %}
from datetime import timedelta
{%- if cookiecutter.database == "sqlite" %}
from pathlib import Path
{%- endif %}

import httpx
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy import make_url
{%- endif %}

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.models import JobStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from tests import redis_server, tasks
{%- else %}
from tests import tasks
{%- endif %}
{%- if cookiecutter.job_backend == "rq" and cookiecutter.database == "postgresql" %}
from tests.processes import Process, free_port
{%- elif cookiecutter.job_backend == "rq" %}
from tests.processes import Process
{%- elif cookiecutter.job_backend == "celery" and cookiecutter.database == "postgresql" %}
from tests.processes import Process, children, free_port
{%- elif cookiecutter.job_backend == "celery" %}
from tests.processes import Process, children
{%- elif cookiecutter.database == "postgresql" %}
from tests.processes import free_port
{%- endif %}


async def serve(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, SessionMaker]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client, app.state.sessionmaker


async def test_health_answers_while_the_app_runs(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_ready_when_every_check_passes(
    client: httpx.AsyncClient,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    worker: Process,
{%- endif %}
) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    checks = {"database": "ok", "redis": "ok", "workers": "ok"}
{%- else %}
    checks = {"database": "ok"}
{%- endif %}
    assert response.json() == {"status": "ready", "checks": checks}


async def test_not_ready_while_the_database_is_down(
    settings: Settings,
{%- if cookiecutter.database == "sqlite" %}
    tmp_path: Path,
{%- endif %}
) -> None:
{%- if cookiecutter.database == "sqlite" %}
    unreachable = f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
{%- else %}
    url = make_url(settings.database_url).set(port=free_port())
    unreachable = url.render_as_string(hide_password=False)
{%- endif %}
    async for client, _ in serve(settings.model_copy(update={"database_url": unreachable})):
        response = await client.get("/health/ready")
        assert response.status_code == 503
        answer = response.json()
        assert answer["status"] == "unavailable"
        assert answer["checks"]["database"].startswith("failed: "), answer
        # Alive, though: a restart would not help.
        assert (await client.get("/health")).status_code == 200
{%- if cookiecutter.job_backend in ("rq", "celery") %}


async def test_not_ready_without_a_worker(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "redis": "ok",
        "workers": "no worker heard from in the last 2 s",
    }


async def test_not_ready_when_redis_goes_away(settings: Settings) -> None:
    with ExitStack() as redis:
        url = redis.enter_context(redis_server.redis_server())
        async for client, _ in serve(settings.model_copy(update={"redis_url": url})):
            redis.close()  # stops the server
            response = await client.get("/health/ready")
            assert response.status_code == 503
            checks = response.json()["checks"]
            assert checks["redis"].startswith("failed: "), checks
            # Workers are known from the database, which still answers.
            assert checks["workers"] == "no worker heard from in the last 2 s"
{%- endif %}


async def test_jobs_health_lists_the_executors_heard_from(
    client: httpx.AsyncClient,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    worker: Process,
{%- endif %}
) -> None:
    [seen] = (await client.get("/health/jobs")).json()["executors"]
{%- if cookiecutter.job_backend == "rq" %}
    assert seen["pid"] == worker.popen.pid
{%- elif cookiecutter.job_backend == "celery" %}
    assert [seen["pid"]] == children(worker)  # Celery's child process runs the jobs
{%- else %}
    assert seen["pid"] == os.getpid()  # this process runs its jobs itself
{%- endif %}
    assert seen["host"] == socket.gethostname()
    # Heartbeats come ten times per lease (2 s here).
    assert 0 <= seen["heartbeat_age_seconds"] < 2


async def test_jobs_health_counts_the_queue_across_processes(settings: Settings) -> None:
    # No polling once started: the rows below stay as written.
    async for client, sessionmaker in serve(settings.model_copy(update={"job_poll_seconds": 3600})):
        now = utcnow()
        waiting = tasks.add.new_job(a=1, b=2)
        waiting.run_after = now - timedelta(seconds=60)
        later = tasks.add.new_job(a=1, b=2)
        later.run_after = now + timedelta(hours=1)
        running = tasks.add.new_job(a=1, b=2)
        running.status = JobStatus.RUNNING
        failed_lately = tasks.add.new_job(a=1, b=2)
        failed_lately.status = JobStatus.FAILED
        failed_lately.finished_at = now - timedelta(minutes=10)
        failed_long_ago = tasks.add.new_job(a=1, b=2)
        failed_long_ago.status = JobStatus.FAILED
        failed_long_ago.finished_at = now - timedelta(hours=2)
        async with sessionmaker() as session:
            session.add_all([waiting, later, running, failed_lately, failed_long_ago])
            await session.commit()

        answer = (await client.get("/health/jobs")).json()
        assert 60 <= answer.pop("oldest_queued_seconds") < 90
        answer.pop("executors")
        assert answer == {
            "backend": "{{ cookiecutter.job_backend }}",
            "queued": 2,
            "running": 1,
            "failed_last_hour": 1,
            # The tasks of these jobs are known to this process, a live executor.
            "waiting_for_task": {},
        }
