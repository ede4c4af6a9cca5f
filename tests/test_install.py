"""Each backend x database installs into a fresh venv, is extended by the README's steps,
migrates and passes its own tests."""

import os
import re
import shlex
import signal
import socket
import subprocess
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
from tests.no_uv import path_without_uv


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


# The README's section on adding a resource: its steps are what this test does.
RESOURCE_SECTION = "### Adding a resource"
BLOCK = re.compile(r"^```(python|diff|sh)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def follow_the_readme(project: Path) -> list[str]:
    """Make the README's file changes in `project` as written; return its commands."""
    readme = (project / "README.md").read_text()
    start = readme.index(RESOURCE_SECTION)
    section = readme[start : readme.index("\n## ", start)].split("\n### ")[0]
    commands: list[str] = []
    for kind, body in BLOCK.findall(section):
        if kind == "sh":
            commands += body.splitlines()
        elif kind == "diff":
            patch = project / "readme.patch"
            patch.write_text(body)
            run(["git", "apply", "--verbose", patch.name], cwd=project)
            patch.unlink()
        else:
            first, code = body.split("\n", 1)
            match = re.fullmatch(r"# (\S+)( \(append\))?", first)
            assert match, f"a Python block of {RESOURCE_SECTION!r} names no file: {first!r}"
            path = project / match[1]
            assert path.exists() == bool(match[2]), f"{path}: appended only if it exists"
            with path.open("a") as file:
                file.write(code)
    return commands


@pytest.mark.parametrize("combination", BACKEND_DATABASE_PAIRS, ids=lambda c: c.id)
def test_combination_installs_extends_by_the_readme_and_passes_its_tests(
    combination: Combination, database_url: str, mypy_cache: Path, tmp_path: Path
) -> None:
    """A new owner's path: install, add a resource by the README's steps (a table, its
    migration, a task, a route and a test), and lint, type checks, the migration check and
    every test stay green."""
    require_binary("uv")
    require_binary("make")
    require_binary("git")
    if combination.job_backend == "rq":
        require_binary("redis-server")
    project = bake(tmp_path, **combination.answers())

    # The project's own install step: a fresh .venv, filled by uv from its warm cache.
    run(["make", "install"], cwd=project)
    venv = project / ".venv" / "bin"
    # The README's commands run as a user runs them: the project's tools first on PATH, and
    # CI set, so a missing server binary fails the baked tests instead of skipping them.
    env = {
        "DATABASE_URL": database_url,
        "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}",
        "CI": "true",
        "MYPY_CACHE_DIR": str(mypy_cache),
    }
    run(["alembic", "upgrade", "head"], cwd=project, env=env)  # the database a user has

    commands = follow_the_readme(project)
    assert commands[-1] == "make test", commands
    outputs = [
        run(shlex.split(command), cwd=project, env=env, timeout=1200) for command in commands
    ]
    assert len(list((project / "migrations" / "versions").glob("*_add_invoices.py"))) == 1
    check = run(["alembic", "check"], cwd=project, env=env)
    assert "No new upgrade operations detected" in check

    summary = [line for line in outputs[-1].splitlines() if re.search(r"\d+ (passed|failed)", line)]
    assert re.search(r"\d+ passed", summary[-1]), summary
    assert "skipped" not in summary[-1], summary
    assert "failed" not in summary[-1], summary


def test_pip_installs_the_project_without_uv(tmp_path: Path) -> None:
    """The README's pip route, which `make install` takes without uv: pip 25.1+, the dev group."""
    make = require_binary("make")
    project = bake(tmp_path, job_backend="rq", database="postgresql")
    readme = (project / "README.md").read_text()
    assert ".venv/bin/python -m pip install -e . --group dev" in readme
    run([make, "install"], cwd=project, env={"PATH": path_without_uv(tmp_path)})
    python = str(project / ".venv" / "bin" / "python")
    run([python, "-m", "pip", "check"], cwd=project)
    # The package, and the dev group's tools.
    run([python, "-c", "import job_service.main, job_service.worker, mypy, pytest"], cwd=project)
    assert (project / ".venv" / "bin" / "ruff").is_file()
    assert not (project / "uv.lock").exists(), "pip neither reads nor writes uv.lock"


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
