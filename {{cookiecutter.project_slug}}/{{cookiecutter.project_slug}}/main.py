"""The application: `uvicorn {{ cookiecutter.project_slug }}.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from {{ cookiecutter.project_slug }} import tasks  # noqa: F401  # registers every task
from {{ cookiecutter.project_slug }}.api import batches, documents, emails, health, jobs, reports
from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.jobs.backend import Backend
from {{ cookiecutter.project_slug }}.jobs.errors import (
    JobNotFound,
    JobStateConflict,
    JobsUnavailable,
)
from {{ cookiecutter.project_slug }}.jobs.queue import JobQueue
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings
{%- if cookiecutter.job_backend != "rq" %}
from {{ cookiecutter.project_slug }}.tasks.cleanup import schedules
{%- endif %}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    app.state.sessionmaker = sessionmaker
{%- if cookiecutter.job_backend == "rq" %}
    backend = Backend(settings)
{%- else %}
    backend = Backend(settings, sessionmaker, schedules(settings))
{%- endif %}
    app.state.jobs = JobQueue(sessionmaker, backend)
    try:
        await backend.start()
        yield
        await backend.stop(settings.job_shutdown_grace_seconds)
    finally:
        await engine.dispose()


async def job_not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_404_NOT_FOUND)


async def job_state_conflict(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_409_CONFLICT)


async def jobs_unavailable(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, JobsUnavailable)
    return JSONResponse(
        {"detail": f"not taking jobs now: {error}"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(error.retry_after_seconds)},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(JobNotFound, job_not_found)
    app.add_exception_handler(JobStateConflict, job_state_conflict)
    app.add_exception_handler(JobsUnavailable, jobs_unavailable)
    app.include_router(health.router)
    app.include_router(jobs.router, prefix="/api/v1")
    app.include_router(emails.router, prefix="/api/v1")
    app.include_router(documents.router, prefix="/api/v1")
    app.include_router(batches.router, prefix="/api/v1")
    app.include_router(reports.router, prefix="/api/v1")
    return app


app = create_app()
