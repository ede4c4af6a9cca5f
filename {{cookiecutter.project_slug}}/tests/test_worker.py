import os
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Worker

from tests.conftest import PROJECT_ROOT


def test_worker_registers_and_stops_on_sigterm(redis_url: str, migrated_database_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": migrated_database_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.project_slug }}.worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 20
        while not Worker.all(connection=redis) and time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()[0].decode()
            time.sleep(0.1)
        assert len(Worker.all(connection=redis)) == 1
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        assert Worker.all(connection=redis) == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        redis.close()
