import os
import selectors
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Worker

from tests.conftest import PROJECT_ROOT


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float) -> None:
    """Read the process's output until a line contains `text`; fail with the output if not."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return
    raise AssertionError(f"no line with {text!r} within {timeout} s:\n{''.join(seen)}")


def test_worker_registers_and_stops_on_sigterm(redis_url: str, migrated_database_url: str) -> None:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": migrated_database_url,
        "LOG_LEVEL": "DEBUG",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.project_slug }}.worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    redis = Redis.from_url(redis_url)
    try:
        # Logged at DEBUG from the work loop, after RQ has installed its signal handlers.
        wait_for_line(worker, ": *** Listening on", timeout=20)
        assert len(Worker.all(connection=redis)) == 1
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        assert Worker.all(connection=redis) == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        redis.close()
