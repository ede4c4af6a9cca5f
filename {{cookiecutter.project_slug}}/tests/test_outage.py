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
from dataclasses import dataclass
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
{%- if cookiecutter.job_backend in ("rq", "celery") %}
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


@dataclass
class SmallDisk:
    """Where the database is, the prefix of a command that runs the web process there, and
    then (`pid`) that process, whose mount namespace holds the disk."""

    database: Path
    prefix: list[str]
    pid_file: Path

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text())


@contextmanager
def small_disk(tmp_path: Path, source: Path) -> Iterator[SmallDisk]:
    """A mount namespace of its own, holding a 16 MiB tmpfs at `tmp_path / "disk"` with a
    copy of `source` on it; nothing of it shows outside that namespace. Making them takes
    root; the process run in it runs as the user running the tests."""
    for tool in ("unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} (util-linux) is not installed")
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], check=False).returncode:
        reason = "a tmpfs in a mount namespace of its own needs root, or passwordless sudo"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    disk, pid_file = tmp_path / "disk", tmp_path / "namespace.pid"
    disk.mkdir()
    uid, gid = str(os.getuid()), str(os.getgid())
    script = (
        'disk=$1 uid=$3 gid=$4; mount -t tmpfs -o size=16m tmpfs "$disk" '
        '&& cp "$2" "$disk/test.db" && chown -R "$uid:$gid" "$disk" && echo $$ > "$5" '
        '&& shift 5 && exec setpriv --reuid="$uid" --regid="$gid" --init-groups "$@"'
    )
    arguments = ["sh", str(disk), str(source), uid, gid, str(pid_file)]
    prefix = privileged(["unshare", "--mount", "sh", "-c", script, *arguments])
    yield SmallDisk(disk / "test.db", prefix, pid_file)


def privileged(command: list[str]) -> list[str]:
    """`command` with root's privileges: as it is when the tests run as root, else through
    passwordless sudo, as on GitHub's runners (the environment kept, PATH sudo's own)."""
    return command if os.geteuid() == 0 else ["sudo", "-n", "--preserve-env", *command]


def in_namespace_of(disk: SmallDisk, *command: str) -> list[str]:
    """`command`, run in the disk's mount namespace."""
    return privileged(["nsenter", "--target", str(disk.pid), "--mount", *command])


def test_a_full_disk_answers_503_and_loses_no_job(settings: Settings, tmp_path: Path) -> None:
    source = Path(settings.database_url.removeprefix("sqlite+aiosqlite:///"))
    with small_disk(tmp_path, source) as disk:
        url = f"sqlite+aiosqlite:///{disk.database}"
        settings = settings.model_copy(update={"database_url": url})
        with start_web(settings, tmp_path / "web.log", wrapper=disk.prefix) as web:
            web.wait_until_up()
            processes = [web]
{%- if cookiecutter.job_backend in ("rq", "celery") %}
            # In the web process's mount namespace: the database is on its disk.
            user = [f"--reuid={os.getuid()}", f"--regid={os.getgid()}", "--init-groups"]
            enter = in_namespace_of(disk, "setpriv", *user)
            with start_worker(settings, tmp_path / "worker.log", wrapper=enter) as worker:
                worker.wait_until_up()
                processes.append(worker)
                run_outage(web, processes, disk)
{%- else %}
            run_outage(web, processes, disk)
{%- endif %}


def run_outage(web: Process, processes: list[Process], disk: SmallDisk) -> None:
    with EmailLoad([web.url]) as load:
        wait_until(lambda: len(load.accepted()) >= 20, 30, "20 emails accepted")
        began = time.monotonic()
        # Fills the disk; the write that finds it full fails, and the rest stays.
        filler = disk.database.parent / "filler"
        fill = in_namespace_of(disk, "sh", "-c", f'cat /dev/zero > "{filler}"')
        subprocess.run(fill, check=False, capture_output=True)
        time.sleep(4)
        subprocess.run(in_namespace_of(disk, "rm", str(filler)), check=True)
        ended = time.monotonic()
        recovery = wait_until(lambda: load.accepted_since(ended), 30, "a 202 after the disk")
        time.sleep(1)
        load.stop()
        drained = wait_until(lambda: all_sent(web.url, load.accepted()), 60, "all sent")
    check_outage(load, (began, ended), processes)
    print(f"first 202 {recovery:.1f} s after the disk was freed; drained {drained:.1f} s later")
{%- endif %}
