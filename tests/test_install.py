"""Each backend x database installs into a fresh venv, migrates and passes its own tests."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    BACKEND_DATABASE_PAIRS,
    PROJECT_TEMPLATE,
    Combination,
    bake,
    load_module,
    require_binary,
    run,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    combination: Combination = request.getfixturevalue("combination")
    if combination.database == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
        return
    require_binary("setpriv")
    # The baked projects' own throwaway-server helper, used as their tests use it.
    pg_server = load_module(PROJECT_TEMPLATE / "tests" / "pg_server.py")
    if pg_server.find_bindir() is None:
        require_binary("postgres")
    with pg_server.postgres_server() as url:
        yield url


@pytest.mark.parametrize("combination", BACKEND_DATABASE_PAIRS, ids=lambda c: c.id)
def test_combination_installs_migrates_and_passes_its_tests(
    combination: Combination, database_url: str, tmp_path: Path
) -> None:
    require_binary("uv")
    require_binary("make")
    if combination.job_backend == "rq":
        require_binary("redis-server")
    project = bake(tmp_path, **combination.answers())

    # The project's own install step: a fresh .venv, filled by uv from its warm cache.
    run(["make", "install"], cwd=project)
    alembic = str(project / ".venv" / "bin" / "alembic")
    run([alembic, "upgrade", "head"], cwd=project, env={"DATABASE_URL": database_url})
    check = run([alembic, "check"], cwd=project, env={"DATABASE_URL": database_url})
    assert "No new upgrade operations detected" in check

    # The project's own lint target, with the tool versions it installed.
    run(["make", "lint"], cwd=project)

    # CI set: a missing server binary fails the baked tests instead of skipping them.
    output = run(["make", "test"], cwd=project, env={"CI": "true"}, timeout=1200)
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)][-1]
    assert re.search(r"\d+ passed", summary), summary
    assert "skipped" not in summary, summary
    assert "failed" not in summary, summary


def test_pip_installs_the_project_without_uv(tmp_path: Path) -> None:
    """The README's pip route: a plain venv, an editable install with the dev extra."""
    project = bake(tmp_path, job_backend="rq", database="postgresql")
    run([sys.executable, "-m", "venv", ".venv"], cwd=project)
    pip = str(project / ".venv" / "bin" / "pip")
    run([pip, "install", "--quiet", "-e", ".[dev]"], cwd=project)
    run([pip, "check"], cwd=project)
    python = str(project / ".venv" / "bin" / "python")
    run([python, "-c", "import job_service.main, job_service.worker"], cwd=project)


def test_the_default_bake_serves_with_make_run(tmp_path: Path) -> None:
    """A new user's first minutes: bake with no input, `make run`, and the service answers."""
    require_binary("make")
    project = bake(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the whole group (make, uvicorn) can be signalled
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # the first run installs the project
        health: httpx.Response | None = None
        while health is None and time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()[0].decode()
            try:
                health = httpx.get(f"{base}/health")
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None, "the service did not answer within 300 s"
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert (project / "job_service.db").exists(), "make run applies the migrations first"
