"""A bake installs with pip where uv is missing, and the default bake serves with `make run`.
(Each backend x database's install, lint, migrations and tests run as the generated
workflow runs them: tests/test_workflow_run.py.)"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import bake, require_binary, run
from tests.no_uv import path_without_uv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
