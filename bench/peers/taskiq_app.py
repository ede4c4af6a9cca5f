"""taskiq's broker (`taskiq worker taskiq_app:broker`): a Redis stream, results in Redis."""

import os

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

backend: RedisAsyncResultBackend[None] = RedisAsyncResultBackend(os.environ["PEER_URL"])
broker = RedisStreamBroker(os.environ["PEER_URL"], queue_name=os.environ["PEER_QUEUE"])
broker = broker.with_result_backend(backend)


@broker.task(task_name="noop")
async def noop() -> None:
    return None


@broker.task(task_name="whoami")
async def whoami() -> str:
    """Which worker answered: how the client tells that both are up."""
    return os.environ["PEER_WORKER"]
