"""Executors on hosts whose clocks are off: one of two {% if cookiecutter.job_backend in ("rq", "celery") %}workers{% else %}web processes{% endif %} runs a minute ahead or behind
(libfaketime moves its wall clock only). Every decision of who runs a job, and when, is
taken in the database's clock, so nothing changes: no email is sent twice, no job runs
early or late, no periodic job fires more often than its period."""

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlmodel import col, func, select

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.load import EmailLoad, all_sent, wait_until
{%- if cookiecutter.job_backend in ("rq", "celery") %}
from tests.processes import free_port, start_web, start_worker
{%- else %}
from tests.processes import start_web
{%- endif %}

SENT = re.compile(r"email to ada@example\.com: (Load \d+-\d+)")


def faketime_library() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("libfaketime is not installed (Debian: faketime); CI must install it")
        pytest.skip("libfaketime is not installed (Debian: faketime)")
    return str(found[0])


def clock_offset(environment: dict[str, str]) -> float:
    """How far the clock of a process started with `environment` is from this one's."""
    command = [sys.executable, "-c", "import time; print(time.time())"]
    answer = subprocess.run(
        command, env={**os.environ, **environment}, capture_output=True, text=True, check=True
    )
    return float(answer.stdout) - time.time()


async def add_delayed_job(settings: Settings, seconds: float) -> Job:
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        job = tasks.add.new_job(a=1, b=1)
        job.run_after = clock.now(seconds)  # type: ignore[assignment]  # set by the database
        session.add(job)
        await session.commit()
    await engine.dispose()
    return job


async def read(settings: Settings, job_id: uuid.UUID) -> Job:
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        job = await session.get(Job, job_id)
    await engine.dispose()
    assert job is not None
    return job


async def count_cleanups(settings: Settings) -> int:
    """How many cleanup jobs the schedule has enqueued so far."""
    engine = create_engine(settings.database_url)
    async with create_sessionmaker(engine)() as session:
        count = await session.exec(select(func.count()).where(col(Job.name) == "cleanup"))
        cleanups = count.one()
    await engine.dispose()
    return cleanups


@pytest.mark.parametrize("skew", ["+60s", "-60s"])
def test_a_host_a_minute_off_runs_nothing_twice_early_or_late(
    skew: str, settings: Settings, tmp_path: Path
) -> None:
    skewed = {
        "LD_PRELOAD": faketime_library(),
        "FAKETIME": skew,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    offset = clock_offset(skewed)
    assert abs(abs(offset) - 60) < 5, f"the clock is {offset:+.0f} s off, not {skew}"
    # The cleanup schedule fires every second: a skewed clock would fire it more often.
    # A lease of 10 s, not the suite's 2: a process that a loaded machine starves of CPU
    # for 2 s is rightly taken for dead and its job run again (at least once), which says
    # nothing of clocks; a clock 60 s off still would.
    settings = settings.model_copy(
        update={"cleanup_schedule": "* * * * * *", "job_lease_seconds": 10}
    )
    with ExitStack() as stack:
{%- if cookiecutter.job_backend in ("rq", "celery") %}
        web = stack.enter_context(start_web(settings, tmp_path / "web.log"))
        executors = [
            stack.enter_context(
                start_worker(
                    settings.model_copy(update={"metrics_port": free_port()}),
                    tmp_path / f"worker-{n}.log",
                    env=skewed if n else None,
                )
            )
            for n in range(2)
        ]
        urls = [web.url]
        web.wait_until_up()
{%- else %}
        executors = [
            stack.enter_context(
                start_web(settings, tmp_path / f"web-{n}.log", env=skewed if n else None)
            )
            for n in range(2)
        ]
        urls = [web.url for web in executors]
{%- endif %}
        for executor in executors:
            executor.wait_until_up()
        started, cleanups_before = time.monotonic(), asyncio.run(count_cleanups(settings))
        with EmailLoad(urls, clients=4, requests=150) as load:
            wait_until(load.done, 60, "150 emails posted")
        assert len(load.accepted()) == 150, Counter(a.status for a in load.answers)
        wait_until(lambda: all_sent(urls[0], load.accepted()), 60, "every email sent")
        # Due in 1.5 s, with nothing queued before it: it starts then, not a minute off.
        delayed = asyncio.run(add_delayed_job(settings, 1.5))
        wait_until(
            lambda: asyncio.run(read(settings, delayed.id)).finished_at is not None, 15, "ran"
        )
        ran = asyncio.run(read(settings, delayed.id))
        cleanups = asyncio.run(count_cleanups(settings)) - cleanups_before
        elapsed = time.monotonic() - started
    sends = [Counter(SENT.findall(executor.output())) for executor in executors]
    total = sum(sends, Counter())
    assert len(total) == 150, "an email was not sent"
    assert max(total.values()) == 1, f"sent twice: {[s for s, n in total.items() if n > 1]}"
    assert all(sends), "both executors take part"
    assert ran.started_at is not None
    waited = (ran.started_at - ran.run_after).total_seconds()
    assert 0 <= waited < 2, f"the delayed job started {waited:+.1f} s after it was due"
    assert 1 <= cleanups <= elapsed + 2, f"{cleanups} cleanups in {elapsed:.0f} s"
    print(f"{skew}: 150 emails, {[sum(s.values()) for s in sends]} sent per executor, 0 twice")
