"""Health: liveness, readiness and the state of the job queue. Always open: no API key."""

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel
from sqlmodel import select

from {{ cookiecutter.project_slug }}.api.deps import JobControlDep
from {{ cookiecutter.project_slug }}.api.responses import UNAVAILABLE
from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import reads
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from {{ cookiecutter.project_slug }}.jobs.backend import Backend
{%- endif %}
from {{ cookiecutter.project_slug }}.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

router = APIRouter(prefix="/health", tags=["health"])

# A check that takes longer than this has failed: a load balancer should not wait on it.
CHECK_TIMEOUT_SECONDS = 3.0


class Readiness(BaseModel):
    status: str
    # Each check: "ok", or why it failed.
    checks: dict[str, str]


class ExecutorSeen(BaseModel):
    id: uuid.UUID
    host: str
    pid: int
    started_at: datetime
    # How long ago its last heartbeat was, in the database's clock.
    heartbeat_age_seconds: float


class JobsHealth(BaseModel):
    backend: str
    queued: int
    running: int
    failed_last_hour: int
    # How long the job waiting longest since it came due has waited.
    oldest_queued_seconds: float
    # Queued jobs by task, of the tasks no live executor knows: they wait for one that
    # does (a deploy under way), and fail after JOB_UNKNOWN_TASK_SECONDS.
    waiting_for_task: dict[str, int]
    # The processes running jobs{% if cookiecutter.job_backend in ("rq", "celery") %} (workers){% endif %}, on every host, heard from within the lease.
    executors: list[ExecutorSeen]


def _sessionmaker(request: Request) -> SessionMaker:
    sessionmaker: SessionMaker = request.app.state.sessionmaker
    return sessionmaker


async def _executors(request: Request) -> list[ExecutorSeen]:
    settings: Settings = request.app.state.settings
    async with _sessionmaker(request)() as session:
        now = await reads.database_time(session)
        executors = await reads.live_executors(session, settings.job_lease_seconds)
    return [
        ExecutorSeen(
            id=executor.id,
            host=executor.host,
            pid=executor.pid,
            started_at=executor.started_at,
            heartbeat_age_seconds=round(max(0.0, (now - executor.heartbeat_at).total_seconds()), 3),
        )
        for executor in executors
    ]


@router.get("")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving."""
    return {"status": "ok"}


async def _check(name: str, probe: Awaitable[T]) -> tuple[str, T | None]:
    """("ok", the probe's result), or why it failed and None."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return "ok", await probe
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s", None
    except Exception as error:
        # The error's text can carry hosts and user names: it goes to the log, not the answer.
        logger.warning("health check %s failed", name, exc_info=True)
        return f"failed: {type(error).__name__}", None


async def _select_one(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        await session.exec(select(1))


@router.get(
    "/ready",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
)
async def ready(
    request: Request,
    response: Response,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    control: JobControlDep,
{%- endif %}
) -> Readiness:
    """Ready for traffic: the database answers{% if cookiecutter.job_backend in ("rq", "celery") %}, Redis answers and a worker was heard from{% endif %}."""
    checks = {"database": (await _check("database", _select_one(_sessionmaker(request))))[0]}
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    redis = control.backend
    assert isinstance(redis, Backend)  # this project's backend, which holds a Redis client
    checks["redis"] = (await _check("redis", asyncio.to_thread(redis.redis.ping)))[0]
    if checks["database"] != "ok":
        checks["workers"] = "unknown: the database does not answer"
    elif not (await _check("workers", _executors(request)))[1]:
        settings: Settings = request.app.state.settings
        checks["workers"] = f"no worker heard from in the last {settings.job_lease_seconds:g} s"
    else:
        checks["workers"] = "ok"
{%- endif %}
    if all(check == "ok" for check in checks.values()):
        return Readiness(status="ready", checks=checks)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="unavailable", checks=checks)


@router.get("/jobs", responses=UNAVAILABLE)
async def jobs_health(request: Request, control: JobControlDep) -> JobsHealth:
    """The job queue as every process sees it: counts from the job table."""
    settings: Settings = request.app.state.settings
    async with _sessionmaker(request)() as session:
        stats = await reads.stats(session)
        waiting = await reads.waiting_for_task(session, settings.job_lease_seconds)
    return JobsHealth(
        backend=control.backend.name,
        queued=stats.queued,
        running=stats.running,
        failed_last_hour=stats.failed_last_hour,
        oldest_queued_seconds=round(stats.oldest_queued_seconds, 3),
        waiting_for_task=waiting,
        executors=await _executors(request),
    )
