"""The application: `uvicorn {{ cookiecutter.project_slug }}.main:app`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from {{ cookiecutter.project_slug }} import (
    metrics,
    tasks,  # noqa: F401  # registers every task
)
from {{ cookiecutter.project_slug }}.api import (
    API_PREFIX,
    batches,
    documents,
    emails,
    errors,
    health,
    job_routes,
    reports,
    schedules,
)
from {{ cookiecutter.project_slug }}.api import metrics as metrics_api
from {{ cookiecutter.project_slug }}.api.body_limit import BodyLimit
from {{ cookiecutter.project_slug }}.api.keys import ApiKeys, require_api_key, require_metrics_key
from {{ cookiecutter.project_slug }}.api.responses import (
    BEYOND_LOOPBACK,
    UNAUTHORIZED,
    UNAVAILABLE,
    Responses,
)
from {{ cookiecutter.project_slug }}.dashboard import add_dashboard
from {{ cookiecutter.project_slug }}.db import close, create_sessionmaker, database_engine
from {{ cookiecutter.project_slug }}.jobs.backend import Backend
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.observability import RequestContext, configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# The API's routers, under /api/v1 and behind API_KEYS when set: add a new one here.
ROUTERS = (
    job_routes.router,
    schedules.router,
    emails.router,
    documents.router,
    batches.router,
    reports.router,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.api_keys and settings.allow_open_api:
        logger.warning("ALLOW_OPEN_API=true: /api/v1 is open to anyone who can reach it")
    elif not settings.api_keys:
        logger.info("API_KEYS is not set: /api/v1 and /dashboard answer on loopback only")
    metrics.configure(settings.metrics_dir)
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    engine = database_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    app.state.sessionmaker = sessionmaker
    backend = Backend(settings, sessionmaker)
    app.state.job_control = JobControl(sessionmaker, backend)
    try:
        await backend.start()
        yield
        await backend.stop(settings.job_shutdown_grace_seconds)
    finally:
        await close(engine)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = ApiKeys(settings.api_keys)
    # Uploads stream to disk under MAX_UPLOAD_BYTES; every other body is capped here.
    uploads = frozenset({f"{API_PREFIX}/documents"})
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, exempt=uploads)
    app.add_middleware(RequestContext)  # outermost: a refusal above is logged too
    errors.add_handlers(app)
    app.include_router(health.router)
    metrics_guard = [Depends(require_metrics_key)] if settings.metrics_require_api_key else []
    metrics_refusals = UNAUTHORIZED if metrics_guard else {}
    app.include_router(
        metrics_api.router,
        dependencies=metrics_guard,
        responses={**UNAVAILABLE, **metrics_refusals},
    )
    # What the guard of /api/v1 refuses: a request without a key; without keys, one from
    # beyond loopback; nothing when ALLOW_OPEN_API=true opens it on purpose.
    refusals: Responses = UNAUTHORIZED if settings.api_keys else BEYOND_LOOPBACK
    if settings.allow_open_api and not settings.api_keys:
        refusals = {}
    api_guard = [Depends(require_api_key)] if refusals else []
    for router in ROUTERS:
        app.include_router(router, dependencies=api_guard, responses={**UNAVAILABLE, **refusals})
    add_dashboard(app)
    return app


app = create_app()
