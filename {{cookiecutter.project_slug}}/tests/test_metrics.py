"""GET /metrics: Prometheus text that moves as jobs run and requests come in, correct
however many processes serve{% if cookiecutter.job_backend in ("rq", "celery") %} and work{% endif %}, parsed with the client's own parser."""

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.jobs.recovery import MAX_LOST_ATTEMPTS
from {{ cookiecutter.project_slug }}.models import JobStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from tests.processes import Process, start_web
{%- else %}
from tests.processes import start_web
{%- endif %}
from tests.test_jobs import FINISHED, submit, wait_for, wait_for_note

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Made at import, as a service's own metrics are: before any app configures metrics.
SIGNUPS = Counter("test_signups", "A metric of the service's own, unlabelled.")
PLAN_CHANGES = Counter("test_plan_changes", "A metric of the service's own, labelled.", ["plan"])


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, settings: Settings) -> Samples:
    """What Prometheus would add up over every target{% if cookiecutter.job_backend in ("rq", "celery") %}: the web process and the worker,
    which counts the jobs it runs and serves them itself{% endif %}."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    samples = parse(response.text)
    async with httpx.AsyncClient() as worker:
        answer = await worker.get(f"http://127.0.0.1:{settings.metrics_port}/metrics")
    for key, count in parse(answer.text).items():
        samples[key] = samples.get(key, 0.0) + count
    return samples
{%- else %}
    return parse(response.text)
{%- endif %}


async def wait_for_samples(
    client: httpx.AsyncClient,
    settings: Settings,
    ready: Callable[[Samples], bool],
    within: float = 10,
) -> Samples:
    """Counts are written just after a job's row{% if cookiecutter.job_backend in ("rq", "celery") %}, by the worker process{% endif %}: wait for them."""
    deadline = time.monotonic() + within
    while not ready(samples := await scrape(client, settings)):
        assert time.monotonic() < deadline, f"metrics did not move within {within} s"
        await asyncio.sleep(0.05)
    return samples


async def test_job_outcomes_durations_and_waits_are_counted(
    client: httpx.AsyncClient, control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    before = await scrape(client, settings)
    added = await submit(control, sessionmaker, tasks.add.new_job(a=1, b=2))
    failing = await submit(control, sessionmaker, tasks.always_fail.new_job(message="no"))
    napping = await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))
    await wait_for_note(f"napping {napping.id}")
    await control.cancel(napping.id)
    for job in (added, failing, napping):
        await wait_for(control, job.id, *FINISHED)

    def moved(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    expected = {
        ("jobs_total", "add", "succeeded"): 1,
        ("jobs_total", "always_fail", "retried"): 2,
        ("jobs_total", "always_fail", "failed"): 1,
        ("jobs_total", "nap", "cancelled"): 1,
    }

    def all_counted(samples: Samples) -> bool:
        return all(
            value(samples, metric, name=task, status=status)
            - value(before, metric, name=task, status=status)
            >= count
            for (metric, task, status), count in expected.items()
        )

    after = await wait_for_samples(client, settings, all_counted)
    for (metric, task, status), count in expected.items():
        assert moved(metric, name=task, status=status) == count, (task, status)
    assert moved("job_duration_seconds_count", name="add") == 1
    assert moved("job_duration_seconds_count", name="always_fail") == 3
    assert moved("job_duration_seconds_sum", name="always_fail") > 0
    # Every attempt waited once in the queue, the cancelled one's too.
    assert moved("job_queue_wait_seconds_count", name="always_fail") == 3
    assert moved("job_queue_wait_seconds_count", name="nap") == 1
    assert moved("job_queue_wait_seconds_bucket", name="add", le="+Inf") == 1


async def test_jobs_recovered_after_their_process_died_are_counted(
    client: httpx.AsyncClient, control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    before = await scrape(client, settings)
    # Rows as a killed process leaves them: running, on an executor that is no more.
    rerun = tasks.add.new_job(a=1, b=1)
    lost_too_often = tasks.add.new_job(a=2, b=2)
    for job, lost in ((rerun, 0), (lost_too_often, MAX_LOST_ATTEMPTS - 1)):
        job.status, job.attempts, job.lost_attempts = JobStatus.RUNNING, 1, lost
        job.executor_id = uuid.uuid4()
    async with sessionmaker() as session:
        session.add_all([rerun, lost_too_often])
        await session.commit()
    await wait_for(control, rerun.id, JobStatus.SUCCEEDED)
    await wait_for(control, lost_too_often.id, JobStatus.FAILED)
    expected = {"retried": 1, "failed": 1, "succeeded": 1}

    def moved(samples: Samples, status: str) -> float:
        return value(samples, "jobs_total", name="add", status=status) - value(
            before, "jobs_total", name="add", status=status
        )

    after = await wait_for_samples(
        client, settings, lambda samples: all(moved(samples, s) >= n for s, n in expected.items())
    )
    assert {status: moved(after, status) for status in expected} == expected


async def test_queue_gauges_come_from_the_job_table(
    client: httpx.AsyncClient, control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    later = tasks.add.new_job(a=1, b=1)
    later.run_after = utcnow() + timedelta(days=1)
    await submit(control, sessionmaker, later)
    napping = await submit(control, sessionmaker, tasks.nap.new_job(seconds=60))
    await wait_for(control, napping.id, JobStatus.RUNNING)
    samples = await scrape(client, settings)
    assert value(samples, "jobs_queued") == 1
    assert value(samples, "jobs_running") == 1
    # The queued job is not due: nothing waits.
    assert value(samples, "jobs_oldest_queued_seconds") == 0
    assert value(samples, "job_executors") == 1
    await control.cancel(napping.id)
    samples = await scrape(client, settings)
    assert value(samples, "jobs_running") == 0


async def test_requests_are_counted_by_route_template(
    client: httpx.AsyncClient,
    settings: Settings,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    worker: Process,
{%- endif %}
) -> None:
    route = {"method": "GET", "route": "/api/v1/jobs/{job_id}", "status": "404"}
    before = await scrape(client, settings)
    for _ in range(3):
        assert (await client.get(f"/api/v1/jobs/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    after = await scrape(client, settings)

    def moved(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert moved("http_requests_total", **route) == 3
    assert moved("http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("http_request_duration_seconds_count", method="GET", route=route["route"]) == 3
    # No raw path becomes a label: the ids would grow the metrics without bound.
    routes = {dict(labels).get("route", "") for _, labels in after}
    assert not any("-" in route for route in routes), routes


def new_connections() -> httpx.Client:
    """A client that opens a new connection for each request, which the kernel hands to
    either process (one client: making one costs 20 ms of CPU)."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


def test_several_uvicorn_workers_report_the_same_totals_and_reuse_their_files(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"metrics_dir": tmp_path / "metrics"})
    labels = {"method": "GET", "route": "/api/v1/jobs", "status": "200"}

    def requests_counted(http: httpx.Client, expected: int) -> list[float]:
        def scrape() -> float:
            return value(
                parse(http.get(f"{web.url}/metrics").text), "http_requests_total", **labels
            )

        # A request is counted once its response is sent: the last may land a moment
        # after the client has its answer.
        deadline = time.monotonic() + 5
        while scrape() < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        return [scrape() for _ in range(10)]

    with new_connections() as http, start_web(settings, tmp_path / "web.log", workers=2) as web:
        web.wait_until_up()
        for _ in range(100):
            assert http.get(f"{web.url}/api/v1/jobs?limit=1").status_code == 200
        assert requests_counted(http, 100) == [100] * 10
        assert web.terminate(timeout=30) == 0
    files = sorted(path.name for path in settings.metrics_dir.glob("*.db"))
    # Each process counts into the files of its own slot.
    slots = {"counter_0.db", "counter_1.db", "histogram_0.db", "histogram_1.db"}
    assert {"counter_0.db", "histogram_0.db"} <= set(files) <= slots, files

    # Restarted, the processes take the slots of the dead ones: the same files, and the
    # totals carry on rather than start again.
    with new_connections() as http, start_web(settings, tmp_path / "web-2.log", workers=2) as web:
        web.wait_until_up()
        for _ in range(20):
            assert http.get(f"{web.url}/api/v1/jobs?limit=1").status_code == 200
        assert requests_counted(http, 120) == [120] * 10
        assert web.terminate(timeout=30) == 0
    # A slot whose process wrote nothing the first time (no request reached it) may
    # have its files now; none beyond the slots.
    after = {path.name for path in settings.metrics_dir.glob("*.db")}
    assert set(files) <= after <= slots, sorted(after)


async def test_metrics_of_the_services_own_are_shown_labelled_or_not(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Also the guard of metrics.py's one reach into prometheus-client: it replaces
    `values.ValueClass`, which the client reads each time a metric is made but does not
    document. Should a release stop reading it, these counts stay in memory, and this
    test says so."""
    before = parse((await client.get("/metrics")).text)
    SIGNUPS.inc()
    PLAN_CHANGES.labels("pro").inc(2)
    after = parse((await client.get("/metrics")).text)
    broken = (
        "a metric made at import is not in the shared files: prometheus-client no longer "
        "makes values with `values.ValueClass`, so metrics.py's replacement of it has no "
        "effect; pin the previous prometheus-client, or set PROMETHEUS_MULTIPROC_DIR "
        "before anything imports it"
    )
    assert value(after, "test_signups_total") - value(before, "test_signups_total") == 1, broken
    changes = "test_plan_changes_total"
    assert value(after, changes, plan="pro") - value(before, changes, plan="pro") == 2, broken
