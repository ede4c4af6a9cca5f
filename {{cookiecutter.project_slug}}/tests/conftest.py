"""Fixtures: real servers started once per test session, a fresh migrated database for
every test, the running app{% if cookiecutter.job_backend in ("rq", "celery") %} and a real worker process{% endif %}."""
{% if cookiecutter.database == "postgresql" %}
import asyncio
{%- endif %}
import os
{%- if cookiecutter.database == "sqlite" %}
import shutil
{%- endif %}
import subprocess
{%- if cookiecutter.database == "postgresql" or cookiecutter.job_backend in ("rq", "celery") %}
import uuid
{%- endif %}
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from fastapi import FastAPI
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
{%- endif %}

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings
{%- if cookiecutter.database == "postgresql" and cookiecutter.job_backend in ("rq", "celery") %}
from tests import pg_server, redis_server
{%- elif cookiecutter.database == "postgresql" %}
from tests import pg_server
{%- elif cookiecutter.job_backend in ("rq", "celery") %}
from tests import redis_server
{%- endif %}
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from tests.processes import Process, free_port, run_module, start_worker
{%- else %}
from tests.processes import run_module
{%- endif %}

PROJECT_ROOT = Path(__file__).parent.parent

T = TypeVar("T")


def start(server: Callable[[], AbstractContextManager[T]], missing: type[Exception]) -> Iterator[T]:
    """Yield a server (or its URL); skip when its binary is missing, except in CI, where
    it fails."""
    try:
        with server() as url:
            yield url
    except missing as error:
        if os.environ.get("CI"):
            pytest.fail(f"{error}; CI must install it")
        pytest.skip(f"{error}; install it to run these tests")


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real alembic command line against a test database (forked: see FORKS)."""
    return run_module("alembic", args, {**os.environ, "DATABASE_URL": database_url})
{%- if cookiecutter.database == "postgresql" %}


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    yield from start(pg_server.postgres_server, pg_server.ServerUnavailable)


async def create_database(server_url: str, name: str, template: str | None = None) -> str:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        copy = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def template_database_url(server_url: str) -> str:
    """Migrated once; each test gets a copy. Nothing connects to it after migrating."""
    url = asyncio.run(create_database(server_url, "migrated_template"))
    upgrade = alembic(url, "upgrade", "head")
    assert upgrade.returncode == 0, upgrade.stderr
    return url


@pytest.fixture
def migrated_database_url(server_url: str, template_database_url: str) -> str:
    """A fresh database of its own for each test, copied from the migrated template."""
    name = f"test_{uuid.uuid4().hex}"
    template = make_url(template_database_url).database
    return asyncio.run(create_database(server_url, name, template=template))
{%- else %}


@pytest.fixture(scope="session")
def template_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrated once; each test gets a copy of the file."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'template.db'}"
    upgrade = alembic(url, "upgrade", "head")
    assert upgrade.returncode == 0, upgrade.stderr
    return url


@pytest.fixture
def migrated_database_url(template_database_url: str, tmp_path: Path) -> str:
    """A fresh database of its own for each test, copied from the migrated template."""
    database = tmp_path / "test.db"
    shutil.copyfile(template_database_url.removeprefix("sqlite+aiosqlite:///"), database)
    return f"sqlite+aiosqlite:///{database}"
{%- endif %}
{%- if cookiecutter.job_backend in ("rq", "celery") %}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from start(redis_server.redis_server, redis_server.ServerUnavailable)
{%- endif %}


@pytest.fixture(scope="session")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One for the whole session: a process keeps its metrics in one directory for life."""
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture
def settings(
    migrated_database_url: str,
    metrics_dir: Path,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    redis_url: str,
{%- endif %}
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """Settings for a test: its own database and files, and short job timings."""
    # The tasks in tests/tasks.py note their runs here, also in other processes.
    monkeypatch.setenv("TEST_RUNS_LOG", str(tmp_path / "runs.log"))
    return Settings(
        database_url=migrated_database_url,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
        redis_url=redis_url,
        {{ "rq" if cookiecutter.job_backend == "rq" else "celery" }}_queue=f"test-{uuid.uuid4().hex}",
        metrics_port=free_port(),
{%- endif %}
        storage_dir=tmp_path / "storage",
        metrics_dir=metrics_dir,
        max_upload_bytes=1024 * 1024,
        max_batch_items=1000,
        cleanup_schedule="",  # tests/test_cleanup.py turns it on
        job_shutdown_grace_seconds=1,
        job_lease_seconds=2,
        job_poll_seconds=0.05,
{%- if cookiecutter.job_backend == "aiojobs" %}
        job_concurrency=10,
        job_pending_limit=100,
{%- endif %}
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running: database open, job backend started."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def sessionmaker(app: FastAPI) -> SessionMaker:
    maker: SessionMaker = app.state.sessionmaker
    return maker
{%- if cookiecutter.job_backend in ("rq", "celery") %}


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Process]:
    """A real worker process on the test's queue and database."""
    with start_worker(settings, tmp_path / "worker.log") as worker:
        worker.wait_until_up()
        yield worker


@pytest.fixture
def second_worker(settings: Settings, tmp_path: Path, worker: Process) -> Iterator[Process]:
    """Another worker: {% if cookiecutter.job_backend == "rq" %}RQ's worker runs{% else %}the test workers run{% endif %} one job at a time."""
    own_port = settings.model_copy(update={"metrics_port": free_port()})
    with start_worker(own_port, tmp_path / "second-worker.log") as second:
        second.wait_until_up()
        yield second


@pytest.fixture
def control(app: FastAPI, worker: Process) -> JobControl:
    """The app's job control, with a worker running its jobs."""
    control: JobControl = app.state.job_control
    return control
{%- else %}


@pytest.fixture
def control(app: FastAPI) -> JobControl:
    """The app's job control; its backend runs the jobs in this process."""
    control: JobControl = app.state.job_control
    return control
{%- endif %}
