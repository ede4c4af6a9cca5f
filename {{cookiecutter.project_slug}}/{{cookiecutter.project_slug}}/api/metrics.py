"""`GET /metrics`: Prometheus text, for every process of the service on this host."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from {{ cookiecutter.project_slug }} import metrics
{%- if cookiecutter.job_backend == "rq" %}
from {{ cookiecutter.project_slug }}.api.jobs import JobQueueDep
{%- endif %}
from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import store

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def scrape(request: Request{% if cookiecutter.job_backend == "rq" %}, jobs: JobQueueDep{% endif %}) -> Response:
    sessionmaker: SessionMaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        stats = await store.stats(session)
    gauges = [
        metrics.Gauge("jobs_queued", "Jobs waiting to run, due or not.", stats.queued),
        metrics.Gauge("jobs_running", "Jobs running now, in any process.", stats.running),
        metrics.Gauge(
            "jobs_oldest_queued_seconds",
            "How long the job waiting longest since it came due has waited.",
            stats.oldest_queued_seconds,
        ),
{%- if cookiecutter.job_backend == "rq" %}
        metrics.Gauge(
            "rq_workers",
            "Workers on this queue heard from lately.",
            len(await jobs.backend.workers()),
        ),
{%- endif %}
    ]
    return Response(metrics.render(gauges), media_type=CONTENT_TYPE_LATEST)
