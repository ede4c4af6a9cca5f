"""Fixtures: real servers started per test session, a migrated database, the running app."""

import os
import subprocess
import sys
{%- if cookiecutter.database == "postgresql" or cookiecutter.job_backend == "rq" %}
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
{%- else %}
from collections.abc import AsyncIterator
{%- endif %}
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings
{%- if cookiecutter.database == "postgresql" and cookiecutter.job_backend == "rq" %}
from tests import pg_server, redis_server
{%- elif cookiecutter.database == "postgresql" %}
from tests import pg_server
{%- elif cookiecutter.job_backend == "rq" %}
from tests import redis_server
{%- endif %}

PROJECT_ROOT = Path(__file__).parent.parent
{%- if cookiecutter.database == "postgresql" or cookiecutter.job_backend == "rq" %}


def start(
    server: Callable[[], AbstractContextManager[str]], missing: type[Exception]
) -> Iterator[str]:
    """Yield a server's URL; skip when its binary is missing, except in CI, where it fails."""
    try:
        with server() as url:
            yield url
    except missing as error:
        if os.environ.get("CI"):
            pytest.fail(f"{error}; CI must install it")
        pytest.skip(f"{error}; install it to run these tests")
{%- endif %}


@pytest.fixture(scope="session")
{%- if cookiecutter.database == "postgresql" %}
def database_url() -> Iterator[str]:
    yield from start(pg_server.postgres_server, pg_server.ServerUnavailable)
{%- else %}
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
{%- endif %}
{%- if cookiecutter.job_backend == "rq" %}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from start(redis_server.redis_server, redis_server.ServerUnavailable)
{%- endif %}


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real alembic command line against the test database."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def migrated_database_url(database_url: str) -> str:
    upgrade = alembic(database_url, "upgrade", "head")
    assert upgrade.returncode == 0, upgrade.stderr
    return database_url


@pytest.fixture
def settings(
    migrated_database_url: str,
{%- if cookiecutter.job_backend == "rq" %}
    redis_url: str,
{%- endif %}
    tmp_path: Path,
) -> Settings:
    return Settings(
        database_url=migrated_database_url,
{%- if cookiecutter.job_backend == "rq" %}
        redis_url=redis_url,
{%- endif %}
        storage_dir=tmp_path / "storage",
        job_shutdown_grace_seconds=1,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process, with its lifespan running."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield client
