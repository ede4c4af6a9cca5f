"""ARQ's worker settings (`arq arq_app.WorkerSettings`)."""

import os
from typing import Any

from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any]) -> None:
    return None


class WorkerSettings:
    functions = (noop,)
    redis_settings = RedisSettings.from_dsn(os.environ["PEER_URL"])
    queue_name = os.environ["PEER_QUEUE"]
    max_jobs = int(os.environ["PEER_CONCURRENCY"])
    # A health-check key per worker, so that the client can tell both are up.
    health_check_key = f"{queue_name}:health-check:{os.environ['PEER_WORKER']}"


# arq's default logs every job at INFO; the benchmark's services log at WARNING.
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}
