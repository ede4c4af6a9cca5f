"""The service{% if cookiecutter.job_backend in ("rq", "celery") %} and its workers{% endif %} as real processes, started the way they run in production."""

import contextlib
import multiprocessing
import os
{%- if cookiecutter.job_backend in ("rq", "celery") %}
import re
{%- endif %}
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx
from pydantic import SecretStr
{%- if cookiecutter.job_backend == "rq" %}
from redis import Redis
from rq import Worker
{%- endif %}

from {{ cookiecutter.project_slug }}.settings import Settings

PROJECT_ROOT = Path(__file__).parent.parent

# Importing the service takes Python about two seconds of CPU, and the tests start a
# process{% if cookiecutter.job_backend in ("rq", "celery") %} (a worker, the command line, uvicorn){% else %} (the command line, uvicorn){% endif %} dozens of times. A fork server imports what
# they import once; each `python -m` is then forked from it, a process of its own in a
# tenth of a second. Not the command line or the app themselves: they read the
# environment when imported. Processes that need an exec (under nsenter, or with
# faketime's LD_PRELOAD) start afresh. "__main__" (pytest's script) is imported there
# once too: a forked child would otherwise import it again.
FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(
    [
        "__main__",
        "fastapi",
        "rich.table",
        "typer",
        "uvicorn.main",
        "{{ cookiecutter.project_slug }}.jobs.moves",
        "{{ cookiecutter.project_slug }}.jobs.reads",
        "{{ cookiecutter.project_slug }}.tasks",
{%- if cookiecutter.job_backend == "rq" %}
        # Not the worker module: `python -m` runs it as __main__, a copy of its own.
        "rq.cli.cli",
{%- elif cookiecutter.job_backend == "celery" %}
        "celery.bin.celery",
        "celery.worker",
{%- endif %}
        "tests.tasks",
    ]
)


def _run_module(module: str, args: list[str], env: dict[str, str], out: str, err: str) -> None:
    """In the forked child: what `python -m module args` would do, in a session of its own."""
    os.setsid()
    os.chdir(PROJECT_ROOT)
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
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


class Forked:
    """A forked `python -m`, with the part of `subprocess.Popen` the tests use."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        assert process.pid is not None
        self.pid: int = process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"python -m ... ({self.pid})", timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        # The fork server, not this process, reaps it and says so a moment later: a
        # process gone in between has nothing left to signal.
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_module(
    module: str, args: Sequence[str], env: Mapping[str, str], out: Path, err: Path
) -> Forked:
    process = FORKS.Process(
        target=_run_module, args=(module, list(args), dict(env), str(out), str(err))
    )
    process.start()
    return Forked(process)


def run_module(
    module: str, args: Sequence[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m module args` to its end, forked; its exit code and output."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        process = fork_module(module, args, env, out, err)
        try:
            code = process.wait(timeout)
        finally:
            process.kill()
        output = [path.read_text(errors="replace") if path.exists() else "" for path in (out, err)]
    return subprocess.CompletedProcess([module, *args], code, *output)


@dataclass
class Process:
    popen: subprocess.Popen[bytes] | Forked
    log: Path
    is_up: Callable[[], bool]
    url: str = ""
    # uvicorn re-raises SIGTERM once its shutdown is complete: it then ends "by SIGTERM".
    sigterm_exit_is_clean: bool = False
    # time.time() when it was started.
    started: float = field(default_factory=time.time)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the process did not come up:\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the process and any it started (uvicorn's worker processes): the
        whole group, which would otherwise outlive the test."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:  # forked a moment ago: not yet the leader of its group
            self.popen.kill()
        self.popen.wait()

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then the exit code; fails with the output if it does not exit in time."""
        self.popen.send_signal(signal.SIGTERM)
        return self.exit_code(timeout)

    def exit_code(self, timeout: float) -> int:
        """The exit code, once a SIGTERM sent before has ended the process."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit {timeout} s after SIGTERM:\n{self.output()}") from None
        if code == -signal.SIGTERM and self.sigterm_exit_is_clean:
            return 0
        return code


def environment(settings: Settings) -> dict[str, str]:
    """The settings as the environment variables a process reads them from."""
    values = {
        name.upper(): as_variable(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }
    return {**os.environ, **values}


def as_variable(value: object) -> str:
    if isinstance(value, list):
        return ",".join(as_variable(item) for item in value)
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


@contextmanager
def running(
    command: list[str],
    settings: Settings,
    log: Path,
    is_up: Callable[[Process], bool],
    url: str = "",
    env: Mapping[str, str] | None = None,
) -> Iterator[Process]:
    """Start the command (with `env` added to the settings' environment), forked if it is
    a plain `python -m`; kill it on the way out if the test has not stopped it."""
    variables = {**environment(settings), **(env or {})}
    popen: subprocess.Popen[bytes] | Forked
    if command[:2] == [sys.executable, "-m"] and "LD_PRELOAD" not in variables:
        popen = fork_module(command[2], command[3:], variables, log, log)
    else:
        with log.open("ab") as log_file:
            popen = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=variables,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # a group of its own, so kill() reaches its children
            )
    # Only uvicorn has a URL here, and only uvicorn re-raises SIGTERM.
    process = Process(popen, log, lambda: is_up(process), url, sigterm_exit_is_clean=bool(url))
    try:
        yield process
    finally:
        if popen.poll() is None:
            process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_web(
    settings: Settings,
    log: Path,
    workers: int = 1,
    wrapper: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> AbstractContextManager[Process]:
    """`uvicorn` serving the app (with the test tasks) on a free port of 127.0.0.1, in
    `workers` processes; `wrapper` is a command that runs it (`unshare ...`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def answers(web: Process) -> bool:
        # A bare connect first: making an HTTP client costs 20 ms of CPU, taken from the
        # process starting, and the port stays closed for most of its start.
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return httpx.get(f"{url}/health").status_code == 200
        except (OSError, httpx.TransportError):
            return False

    command = [*wrapper, sys.executable, "-m", "uvicorn", "tests.app:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    return running(command, settings, log, answers, url, env)
{%- if cookiecutter.job_backend in ("rq", "celery") %}
{%- if cookiecutter.job_backend == "rq" %}


def family(pid: int) -> set[int]:
    """The process and its descendants: under a wrapper that forks (sudo), the worker is
    a child of the process started."""
    found, todo = set[int](), [pid]
    while todo:
        found.add(parent := todo.pop())
        with contextlib.suppress(OSError):
            todo += map(int, Path(f"/proc/{parent}/task/{parent}/children").read_text().split())
    return found
{%- endif %}


def start_worker(
    settings: Settings,
    log: Path,
    wrapper: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    pool: int = 1,
) -> AbstractContextManager[Process]:
{%- if cookiecutter.job_backend == "rq" %}
    """The service's worker command, with the test tasks' worker class, on the settings'
    queue: RQ's worker, or its worker pool of `pool` processes; `wrapper` is a command
    that runs it (`nsenter ...`). Up once all its workers are registered."""

    def registered(worker: Process) -> bool:
        with Redis.from_url(settings.redis_url) as redis:
            pids = family(worker.popen.pid)
            return sum(w.pid in pids for w in Worker.all(connection=redis)) >= pool

    command = [*wrapper, sys.executable, "-m", "{{ cookiecutter.project_slug }}.worker"]
    if pool > 1:
        command += ["worker-pool", "-n", str(pool)]
    command += ["--worker-class", "tests.worker.Worker"]
    return running(command, settings, log, registered, env=env)
{%- else %}
    """Celery's worker command, with the test tasks' app, on the settings' queue, with
    `pool` child processes; `wrapper` is a command that runs it (`nsenter ...`). Up once
    each child runs jobs and Celery says it is ready."""

    def registered(worker: Process) -> bool:
        output = worker.output() if log.exists() else ""
        return output.count(" runs jobs") >= pool and " ready." in output

    command = [*wrapper, sys.executable, "-m", "celery", "-A", "tests.worker", "worker"]
    # A name of its own: several workers of a test run on one host.
    command += ["--concurrency", str(pool), "--hostname", f"{log.stem}-{os.getpid()}@%h"]
    return running(command, settings, log, registered, env=env)
{%- endif %}


def metrics_ports(worker: Process) -> list[int]:
    """The ports its processes serve their metrics on, as each logged it: the first free
    one from METRICS_PORT up, which another test's server may have taken first."""
    logged = re.findall(r"serving metrics on http://[^:]+:(\d+)/", worker.output())
    return [int(port) for port in logged]
{%- if cookiecutter.job_backend == "celery" %}


def children(worker: Process) -> list[int]:
    """The worker's child processes, which run the jobs."""
    # Each thread's own: the pool may start a new child from a thread of its own.
    threads = Path(f"/proc/{worker.popen.pid}/task").glob("*/children")
    return [int(child) for thread in threads for child in thread.read_text().split()]
{%- endif %}
{%- endif %}


@contextmanager
def start_service(settings: Settings, folder: Path) -> Iterator[list[Process]]:
    """The whole service, up and logging into `folder`: uvicorn first{% if cookiecutter.job_backend in ("rq", "celery") %}, then a worker{% endif %}."""
    with ExitStack() as stack:
        web = stack.enter_context(start_web(settings, folder / "web.log"))
{%- if cookiecutter.job_backend in ("rq", "celery") %}
        worker = stack.enter_context(start_worker(settings, folder / "worker.log"))
        worker.wait_until_up()
        web.wait_until_up()
        yield [web, worker]
{%- else %}
        web.wait_until_up()
        yield [web]
{%- endif %}
