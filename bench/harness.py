"""What every benchmark case shares: baking, migrating, real processes on 127.0.0.1,
memory readings and the statistics of several runs."""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
BENCH = TEMPLATE / "bench"
SLUG = "job_service"
BACKENDS = ("create_task", "aiojobs", "rq")
# Logging every request and email costs the same in both columns but is not what is
# measured: the services run at WARNING.
QUIET = {"LOG_LEVEL": "WARNING"}


@dataclass(frozen=True)
class Stats:
    """Several runs of one measurement."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stats":
        return cls(statistics.median(values), min(values), max(values), len(values))


def bake(backend: str, output: Path, database: str = "sqlite") -> Path:
    """The backend's default project on `database`, rendered only; returns its folder."""
    project = output / f"{backend}-{database}"
    shutil.rmtree(project, ignore_errors=True)
    cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(project),
        extra_context={"job_backend": backend, "database": database},
    )
    return project / SLUG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(project: Path, **variables: str) -> dict[str, str]:
    # The project and bench/ are importable: baselines reuse the project's models.
    path = os.pathsep.join([str(project), str(BENCH)])
    return {**os.environ, "PYTHONPATH": path, **QUIET, **variables}


def migrated_database(project: Path, url: str) -> None:
    """The empty database at `url` (SQLite or PostgreSQL), migrated to head."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=project,
        env=environment(project, DATABASE_URL=url),
        check=True,
        capture_output=True,
    )


def python(project: Path, script: str, *args: str, **variables: str) -> str:
    """Run a bench script with the project importable; returns its stdout."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=project,
        env=environment(project, **variables),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    started_seconds: float  # from spawn to the first 200 of /health

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def serving(project: Path, app: str, log: Path, **variables: str) -> Iterator[Server]:
    """uvicorn serving `app` (one process) on 127.0.0.1; stopped on the way out."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    started = time.perf_counter()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*command, "--no-access-log"],
            cwd=project,
            env=environment(project, **variables),
            stdout=output,
            stderr=output,
        )
    server = Server(process, url, 0.0)
    try:
        while True:
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"{app} did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.01)
        server.started_seconds = time.perf_counter() - started
        yield server
    finally:
        server.stop()


@contextmanager
def processes(
    project: Path, command: list[str], count: int, log: Path, **variables: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` copies of a command (workers); stopped on the way out."""
    with log.open("ab") as output:
        running = [
            subprocess.Popen(
                command,
                cwd=project,
                env=environment(project, **variables),
                stdout=output,
                stderr=output,
            )
            for _ in range(count)
        ]
    try:
        yield running
    finally:
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def redis_server(log: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 without persistence; yields its URL."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(port)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=output,
            stderr=output,
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
