"""Logs as an operator reads them: `LOG_FORMAT=json` makes every line a JSON object, lines
written inside a job name the job, request lines carry the request id the response
returns, and an exception's traceback is written once."""

import asyncio
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.contextvars import bound_contextvars

from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.processes import Process, start_service
from tests.test_emails import MESSAGE


def json_lines(process: Process) -> list[dict[str, Any]]:
    records = []
    for line in process.output().splitlines():
{%- if cookiecutter.job_backend == "celery" %}
        # Celery prints its stop notice itself, outside logging, after an empty line.
        if line in ("", "worker: Warm shutdown (MainProcess)"):
            continue
{%- endif %}
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a line that is not JSON: {line!r}") from None
    return records


async def insert(settings: Settings, job: Job) -> None:
    """Straight into the table, as another service would: the poller finds it."""
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        session.add(job)
        await session.commit()
    await engine.dispose()


def wait_until_finished(
    url: str, job_id: uuid.UUID, headers: dict[str, str] | None = None, within: float = 20
) -> None:
    deadline = time.monotonic() + within
    while httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=headers).json()["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, f"job {job_id} did not finish within {within} s"
        time.sleep(0.05)


def test_json_lines_carry_the_request_id_and_the_job(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"log_format": "json"})
    failing = tasks.always_fail.new_job(message="disk full", max_attempts=1)
    with start_service(settings, tmp_path) as service:
        web = service[0]
        sent = httpx.post(
            f"{web.url}/api/v1/emails", json=MESSAGE, headers={"X-Request-ID": "checkout-42"}
        )
        assert sent.status_code == 202, sent.text
        assert sent.headers["X-Request-ID"] == "checkout-42"
        # Without one, or with one that could forge log lines, the service makes its own.
        for given in ({}, {"X-Request-ID": "x" * 500}, {"X-Request-ID": "a b"}):
            made = httpx.get(f"{web.url}/health", headers=given).headers["X-Request-ID"]
            assert re.fullmatch(r"[0-9a-f]{32}", made), made
        asyncio.run(insert(settings, failing))
        email_job = uuid.UUID(sent.json()["job_id"])
        wait_until_finished(web.url, email_job)
        wait_until_finished(web.url, failing.id)
        for process in service:
            assert process.terminate(timeout=30) == 0
    records = [record for process in service for record in json_lines(process)]

    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    requested = [record for record in records if record.get("request_id") == "checkout-42"]
    assert [record["message"] for record in requested if record["logger"].endswith(".access")]
    assert all(record["message"].startswith("POST /api/v1/emails 202") for record in requested)

    emailing = [record for record in records if record.get("job_id") == str(email_job)]
    assert any(record["message"].startswith("job succeeded") for record in emailing), emailing
    assert {(r["job_name"], r["attempt"], r.get("request_id")) for r in emailing} == {
        ("send_email", 1, None)
    }

    failed = [record for record in records if record.get("job_id") == str(failing.id)]
    assert {(r["job_name"], r["attempt"]) for r in failed} == {("always_fail", 1)}
    [with_traceback] = [record for record in failed if "exception" in record]
    assert with_traceback["level"] == "warning"
    assert with_traceback["exception"].count("Traceback") == 1
    assert "RuntimeError: disk full" in with_traceback["exception"]
    # Written once: no other line repeats it.
    assert sum("Traceback" in json.dumps(record) for record in records) == 1


def test_json_line_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    with bound_contextvars(job_id="j-1", job_name="send_email", attempt=2):
        logging.getLogger("test").info("hello %s", "world")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["message"] == "hello world"
    assert (record["level"], record["logger"]) == ("info", "test")
    assert (record["job_id"], record["job_name"], record["attempt"]) == ("j-1", "send_email", 2)


def test_console_lines_are_readable_with_the_traceback_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "console")
    with bound_contextvars(request_id="r-7"):
        try:
            raise ValueError("bad input")
        except ValueError:
            logging.getLogger("test").exception("could not %s", "parse")
    output = capsys.readouterr().err
    first = output.splitlines()[0]
    assert "could not parse" in first
    assert "request_id=r-7" in first
    assert "error" in first
    assert output.count("Traceback") == 1
    assert "ValueError: bad input" in output
