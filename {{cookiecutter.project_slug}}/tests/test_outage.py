"""Outages under a running service, with real processes: {% if cookiecutter.database == "postgresql" %}PostgreSQL stopped as if it
crashed (immediate shutdown) and started again 6 s later{% else %}the disk holding the SQLite
database full for 4 s, then freed{% endif %}.

Requests answer 503 with Retry-After while the database is unavailable, never 500; the job
loops log the outage once and resume by themselves; every email accepted is sent, and no
job is left running or queued.
"""
{% if cookiecutter.database == "sqlite" %}
import os
import shutil
{%- else %}
import asyncio
{%- endif %}
{%- if cookiecutter.database == "sqlite" %}
import subprocess
{%- endif %}
import time
from collections import Counter
from collections.abc import Iterator
{%- if cookiecutter.database == "sqlite" %}
from contextlib import contextmanager
{%- endif %}
from pathlib import Path

{% if cookiecutter.database == "postgresql" -%}
import httpx
{% endif -%}
import pytest
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy import text
from sqlalchemy.pool import QueuePool
{%- endif %}

{% if cookiecutter.database == "postgresql" -%}
from {{ cookiecutter.project_slug }}.db import create_engine
{% endif -%}
from {{ cookiecutter.project_slug }}.settings import Settings
{%- if cookiecutter.database == "postgresql" %}
from tests import pg_server
from tests.conftest import alembic, create_database, start
from tests.load import EmailLoad, all_sent, wait_until
from tests.processes import Process, start_service
{%- else %}
from tests.load import EmailLoad, all_sent, wait_until
{%- if cookiecutter.job_backend == "rq" %}
from tests.processes import Process, start_web, start_worker
{%- else %}
from tests.processes import Process, start_web
{%- endif %}
{%- endif %}

# What each job loop logs when it loses the database; once per outage, not per try.
OUTAGE_LINE = "retrying until it is back"


def check_outage(load: EmailLoad, outage: tuple[float, float], processes: list[Process]) -> None:
    statuses = Counter(answer.status for answer in load.answers)
    assert set(statuses) <= {202, 503}, f"answers other than 202 and 503: {statuses}"
    unavailable = [answer for answer in load.answers if answer.status == 503]
    assert unavailable, "no request saw the outage"
    assert all(answer.retry_after for answer in unavailable), "a 503 without Retry-After"
    began, ended = outage
    assert all(began <= answer.at for answer in unavailable), "a 503 before the outage"
    for process in processes:
        lines = [line for line in process.output().splitlines() if OUTAGE_LINE in line]
        # One line per job loop (poller, heartbeat, writes), however many tries it made.
        assert len(lines) <= 3, "\n".join(lines)
    print(f"answers {dict(statuses)}, outage {ended - began:.1f} s")
{%- if cookiecutter.database == "postgresql" %}


@pytest.fixture
def server() -> Iterator[pg_server.PostgresServer]:
    """A PostgreSQL server of this test's own, since the test stops it."""
    yield from start(pg_server.running_postgres, pg_server.ServerUnavailable)


def test_a_database_restart_answers_503_and_loses_no_job(
    server: pg_server.PostgresServer, settings: Settings, tmp_path: Path
) -> None:
    url = asyncio.run(create_database(server.url, "outage"))
    assert alembic(url, "upgrade", "head").returncode == 0
    settings = settings.model_copy(update={"database_url": url})
    with start_service(settings, tmp_path) as processes, EmailLoad([processes[0].url]) as load:
        wait_until(lambda: len(load.accepted()) >= 20, 30, "20 emails accepted")
        began = time.monotonic()
        server.stop(immediate=True)
        # The dashboard too: a page that cannot read the database is a 503, not a 500.
        page = httpx.get(f"{processes[0].url}/dashboard")
        assert (page.status_code, page.headers.get("retry-after")) == (503, "5"), page.text
        time.sleep(6)
        server.start()
        ended = time.monotonic()
        recovery = wait_until(lambda: load.accepted_since(ended), 30, "a 202 after the restart")
        time.sleep(1)
        load.stop()
        drained = wait_until(lambda: all_sent(processes[0].url, load.accepted()), 60, "all sent")
    check_outage(load, (began, ended), processes)
    print(f"first 202 {recovery:.1f} s after the restart; queue drained {drained:.1f} s later")


async def test_the_connections_a_restart_closed_are_replaced_before_use(
    server: pg_server.PostgresServer,
) -> None:
    """A restart closes every connection in the pool; none may reach a request after it."""
    engine = create_engine(server.url)

    async def select_one() -> int:
        async with engine.connect() as connection:
            one: int = (await connection.execute(text("SELECT 1"))).scalar_one()
            return one

    pooled = 5
    try:
        for restart in (None, True, False):  # none yet, then a crash, then a fast shutdown
            if restart is not None:
                # In threads: the event loop goes on meanwhile, as a service's does.
                await asyncio.to_thread(server.stop, immediate=restart)
                await asyncio.to_thread(server.start)
            assert await asyncio.gather(*(select_one() for _ in range(pooled))) == [1] * pooled
            assert isinstance(engine.pool, QueuePool)
            assert engine.pool.checkedin() == pooled
    finally:
        await engine.dispose()
{%- else %}


@contextmanager
def small_disk(tmp_path: Path) -> Iterator[list[str]]:
    """A command prefix running a process in a mount namespace of its own, with a 16 MiB
    tmpfs at `tmp_path / "disk"`; nothing of it shows outside that namespace."""
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} (util-linux) is not installed")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("a tmpfs in a mount namespace of its own needs root")
        pytest.skip("a tmpfs in a mount namespace of its own needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = 'mount -t tmpfs -o size=16m tmpfs "$1" && cp "$2" "$1/test.db" && shift 2 && exec "$@"'
    yield ["unshare", "--mount", "sh", "-c", script, "sh", str(disk)]


def in_namespace_of(process: Process, command: str) -> None:
    subprocess.run(
        ["nsenter", "--target", str(process.popen.pid), "--mount", "sh", "-c", command],
        check=False,
        capture_output=True,
    )


def test_a_full_disk_answers_503_and_loses_no_job(settings: Settings, tmp_path: Path) -> None:
    with small_disk(tmp_path) as prefix:
        source = settings.database_url.removeprefix("sqlite+aiosqlite:///")
        database = tmp_path / "disk" / "test.db"
        settings = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{database}"})
        with start_web(settings, tmp_path / "web.log", wrapper=[*prefix, source]) as web:
            web.wait_until_up()
            processes = [web]
{%- if cookiecutter.job_backend == "rq" %}
            # In the web process's mount namespace: the database is on its disk.
            enter = ["nsenter", "--target", str(web.popen.pid), "--mount"]
            with start_worker(settings, tmp_path / "worker.log", wrapper=enter) as worker:
                worker.wait_until_up()
                processes.append(worker)
                run_outage(web, processes, database)
{%- else %}
            run_outage(web, processes, database)
{%- endif %}


def run_outage(web: Process, processes: list[Process], database: Path) -> None:
    with EmailLoad([web.url]) as load:
        wait_until(lambda: len(load.accepted()) >= 20, 30, "20 emails accepted")
        began = time.monotonic()
        # Fills the disk; the write that finds it full fails, and the rest stays.
        in_namespace_of(web, f'cat /dev/zero > "{database.parent}/filler"')
        time.sleep(4)
        in_namespace_of(web, f'rm "{database.parent}/filler"')
        ended = time.monotonic()
        recovery = wait_until(lambda: load.accepted_since(ended), 30, "a 202 after the disk")
        time.sleep(1)
        load.stop()
        drained = wait_until(lambda: all_sent(web.url, load.accepted()), 60, "all sent")
    check_outage(load, (began, ended), processes)
    print(f"first 202 {recovery:.1f} s after the disk was freed; drained {drained:.1f} s later")
{%- endif %}
