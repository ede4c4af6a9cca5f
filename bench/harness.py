"""What every benchmark case shares: baking, migrating, real processes on 127.0.0.1,
memory readings and the statistics of several runs."""

import multiprocessing
import os
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
BENCH = TEMPLATE / "bench"
SLUG = "job_service"
BACKENDS = ("create_task", "aiojobs", "rq", "celery")
# Logging every request and email costs the same in both columns but is not what is
# measured: the services run at WARNING.
QUIET = {"LOG_LEVEL": "WARNING"}

# Importing the libraries a project uses takes Python about two seconds of CPU, and a run
# starts a few hundred processes. A fork server imports them once; scripts, workers and
# the servers whose speed is measured are forked from it, with their project importable
# (never a project's own modules: they differ by project). The servers whose memory is
# measured (idle, upload) start afresh, as a user's would. "__main__" (bench/run.py) is
# imported there once too: a forked child would otherwise import it again, peers and all.
FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(
    [
        "__main__",
        "aiojobs",
        "aiosqlite",
        "asyncpg",
        "celery.bin.celery",
        "fastapi",
        "httpx",
        "prometheus_client",
        "psycopg",
        "pydantic_settings",
        "rq",
        "sqlalchemy.ext.asyncio",
        "sqlmodel",
        "structlog",
        "uvicorn.main",
    ]
)


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


def _forked(command: list[str], project: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked child: `python SCRIPT ...` or `python -m MODULE ...` in `project`."""
    os.chdir(project)
    os.environ.clear()
    os.environ.update(env)
    # multiprocessing closed stdin; uvicorn hands descriptor 0 to its worker processes.
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115  # the process's own stdin, for life
    for fd, path in ((1, out), (2, err)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(file, fd)
        os.close(file)
    # What PYTHONPATH and the script's folder would have put first.
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    if command[0] == "-m":
        sys.argv = command[1:]
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = command
        sys.path.insert(0, str(Path(command[0]).parent))
        runpy.run_path(command[0], run_name="__main__")


class Forked:
    """A process forked from FORKS, with the part of `subprocess.Popen` the bench uses."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        assert process.pid is not None
        self.pid: int = process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"forked process {self.pid}", timeout or 0)
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()


def fork(command: list[str], project: Path, env: dict[str, str], out: Path, err: Path) -> Forked:
    """`command` (after `python`) forked from FORKS, its output appended to `out` and `err`."""
    arguments = (command, str(project), env, str(out), str(err))
    process = FORKS.Process(target=_forked, args=arguments, daemon=False)
    process.start()
    return Forked(process)


def python(project: Path, script: str, *args: str, **variables: str) -> str:
    """Run a bench script with the project importable, forked; returns its stdout."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        process = fork(
            [str(BENCH / script), *args], project, environment(project, **variables), out, err
        )
        try:
            code = process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
        stdout, stderr = (path.read_text() if path.exists() else "" for path in (out, err))
    if code != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{stderr[-3000:]}")
    return stdout


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


@dataclass
class Server:
    process: subprocess.Popen[bytes] | Forked
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
def serving(
    project: Path,
    app: str,
    log: Path,
    settings: dict[str, str],
    workers: int = 1,
    forked: bool = False,
) -> Iterator[Server]:
    """uvicorn serving `app` in `workers` processes on 127.0.0.1, started afresh or
    `forked` (see FORKS); stopped on the way out."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log"]
    env = environment(project, **settings)
    started = time.perf_counter()
    process: subprocess.Popen[bytes] | Forked
    if forked:
        process = fork(command, project, env, log, log)
    else:
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, *command], cwd=project, env=env, stdout=output, stderr=output
            )
    server = Server(process, url, 0.0)
    try:
        while True:
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"{app} did not start:\n{log.read_text()[-3000:]}")
            # A bare connect until the port opens: an HTTP client costs 20 ms of CPU to
            # make, which polling would take from the server starting, and from its time.
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except (OSError, httpx.TransportError):
                time.sleep(0.01)
        server.started_seconds = time.perf_counter() - started
        yield server
    finally:
        server.stop()


@contextmanager
def processes(
    project: Path,
    command: list[str],
    count: int,
    log: Path,
    settings: dict[str, str],
    forked: bool = False,
) -> Iterator[list[subprocess.Popen[bytes] | Forked]]:
    """`count` copies of a `python` command (workers), started afresh or `forked` (see
    FORKS); stopped on the way out."""
    env = environment(project, **settings)
    running: list[subprocess.Popen[bytes] | Forked] = []
    with log.open("ab") as output:
        for _ in range(count):
            if forked:
                running.append(fork(command[1:], project, env, log, log))
            else:
                popen = subprocess.Popen(
                    command, cwd=project, env=env, stdout=output, stderr=output
                )
                running.append(popen)
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
