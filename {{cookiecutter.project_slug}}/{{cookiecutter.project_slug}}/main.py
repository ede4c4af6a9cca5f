"""The application: `uvicorn {{ cookiecutter.project_slug }}.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.api import health
from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.jobs.backend import Backend
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    app.state.sessionmaker = create_sessionmaker(engine)
{%- if cookiecutter.job_backend == "create_task" %}
    backend = Backend()
{%- elif cookiecutter.job_backend == "aiojobs" %}
    backend = Backend(settings.job_concurrency, settings.job_pending_limit)
{%- else %}
    backend = Backend(settings.redis_url, settings.rq_queue)
{%- endif %}
    app.state.backend = backend
    try:
        await backend.start()
        yield
        await backend.stop(settings.job_shutdown_grace_seconds)
    finally:
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(health.router)
    return app


app = create_app()
