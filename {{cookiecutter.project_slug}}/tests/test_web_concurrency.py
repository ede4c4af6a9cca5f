"""Several web processes on one host (`uvicorn --workers 4`, as WEB_CONCURRENCY=4 runs it)
under concurrent clients: no request answers 5xx, and every email accepted is sent once."""

from collections import Counter
from pathlib import Path

from {{ cookiecutter.project_slug }}.settings import Settings
from tests.load import EmailLoad, all_sent, wait_until
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from tests.processes import start_web, start_worker
{%- else %}
from tests.processes import start_web
{%- endif %}

REQUESTS = 300
CLIENTS = 8


def test_four_web_processes_under_concurrent_load_answer_no_5xx(
    settings: Settings, tmp_path: Path
) -> None:
{%- if cookiecutter.job_backend == "aiojobs" %}
    # Room for every email in memory: this test is about processes, not backpressure.
    settings = settings.model_copy(update={"job_pending_limit": 10 * REQUESTS})
{%- endif %}
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    with (
        start_web(settings, tmp_path / "web.log", workers=4) as web,
        start_worker(settings, tmp_path / "worker.log") as worker,
    ):
        worker.wait_until_up()
        web.wait_until_up()
        with EmailLoad([web.url], clients=CLIENTS, requests=REQUESTS) as load:
            wait_until(load.done, 120, f"{REQUESTS} emails posted")
        wait_until(lambda: all_sent(web.url, load.accepted()), 180, "every email sent")
{%- else %}
    with start_web(settings, tmp_path / "web.log", workers=4) as web:
        web.wait_until_up()
        with EmailLoad([web.url], clients=CLIENTS, requests=REQUESTS) as load:
            wait_until(load.done, 120, f"{REQUESTS} emails posted")
        wait_until(lambda: all_sent(web.url, load.accepted()), 180, "every email sent")
{%- endif %}
    statuses = Counter(answer.status for answer in load.answers)
    assert statuses == {202: REQUESTS}, statuses
