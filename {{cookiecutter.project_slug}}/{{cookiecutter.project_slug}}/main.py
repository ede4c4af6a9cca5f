"""The application: `uvicorn {{ cookiecutter.project_slug }}.main:app`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from {{ cookiecutter.project_slug }} import (
    metrics,
    tasks,  # noqa: F401  # registers every task
)
from {{ cookiecutter.project_slug }}.api import (
    batches,
    documents,
    emails,
    health,
    jobs,
    reports,
)
from {{ cookiecutter.project_slug }}.api import metrics as metrics_api
from {{ cookiecutter.project_slug }}.api.keys import ApiKeys, require_api_key, require_metrics_key
from {{ cookiecutter.project_slug }}.db import (
    create_engine,
    create_sessionmaker,
    database_unavailable,
)
from {{ cookiecutter.project_slug }}.jobs.backend import Backend
from {{ cookiecutter.project_slug }}.jobs.errors import (
    JobNotFound,
    JobStateConflict,
    JobsUnavailable,
)
from {{ cookiecutter.project_slug }}.jobs.queue import JobQueue
from {{ cookiecutter.project_slug }}.observability import RequestContext, configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings
{%- if cookiecutter.job_backend != "rq" %}
from {{ cookiecutter.project_slug }}.tasks.cleanup import schedules
{%- endif %}

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.api_keys:
        logger.warning("API_KEYS is not set: /api/v1 is open to anyone who can reach it")
    metrics.configure(settings.metrics_dir)
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url{% if cookiecutter.database == "postgresql" %}, settings.database_timeout_seconds{% endif %})
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


# How long a client is asked to wait when the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5


async def database_unavailable_answer(request: Request, error: Exception) -> JSONResponse:
    """503 for a request that lost the database (down, restarting, unreachable, full):
    the client may try again, nothing it sent was half written."""
    if not database_unavailable(error):
        raise error
    logger.warning("answered 503: the database is unavailable (%s)", type(error).__name__)
    return JSONResponse(
        {"detail": "the database is unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


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
    app.state.api_keys = ApiKeys(settings.api_keys)
    app.add_middleware(RequestContext)
    app.add_exception_handler(JobNotFound, job_not_found)
    app.add_exception_handler(JobStateConflict, job_state_conflict)
    app.add_exception_handler(JobsUnavailable, jobs_unavailable)
    app.add_exception_handler(DBAPIError, database_unavailable_answer)
    app.add_exception_handler(OSError, database_unavailable_answer)
    app.include_router(health.router)
    metrics_guard = [Depends(require_metrics_key)] if settings.metrics_require_api_key else []
    app.include_router(metrics_api.router, dependencies=metrics_guard)
    api_guard = [Depends(require_api_key)] if settings.api_keys else []
    for router in (jobs.router, emails.router, documents.router, batches.router, reports.router):
        app.include_router(router, dependencies=api_guard)
    return app


app = create_app()
