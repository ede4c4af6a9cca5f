"""`GET /metrics`: Prometheus text, for every web process of the service on this host."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from {{ cookiecutter.project_slug }} import metrics
from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def scrape(request: Request) -> Response:
    sessionmaker: SessionMaker = request.app.state.sessionmaker
    settings: Settings = request.app.state.settings
    async with sessionmaker() as session:
        stats = await reads.stats(session)
        executors = await reads.live_executors(session, settings.job_lease_seconds)
    gauges = [
        metrics.Gauge("jobs_queued", "Jobs waiting to run, due or not.", stats.queued),
        metrics.Gauge("jobs_running", "Jobs running now, in any process.", stats.running),
        metrics.Gauge(
            "jobs_oldest_queued_seconds",
            "How long the job waiting longest since it came due has waited.",
            stats.oldest_queued_seconds,
        ),
        metrics.Gauge(
            "job_executors",
            "Processes running jobs, on every host, heard from within the lease.",
            len(executors),
        ),
    ]
    return Response(metrics.render(gauges), media_type=CONTENT_TYPE_LATEST)
