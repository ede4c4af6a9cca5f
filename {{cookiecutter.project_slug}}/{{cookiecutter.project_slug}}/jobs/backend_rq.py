"""Hands jobs to RQ through Redis; `python -m {{ cookiecutter.project_slug }}.worker` runs them."""

import logging

from redis import Redis
from rq import Queue

logger = logging.getLogger(__name__)


class Backend:
    name = "rq"

    def __init__(self, redis_url: str, queue_name: str) -> None:
        self._redis = Redis.from_url(redis_url)
        self.queue = Queue(queue_name, connection=self._redis)

    async def start(self) -> None:
        # Fail at start-up, with the URL's host in the error, rather than at the first job.
        self._redis.ping()
        logger.info("job backend %s started (queue %s)", self.name, self.queue.name)

    async def stop(self, grace_seconds: float) -> None:
        """The workers own running jobs; the web process only closes its connection."""
        self._redis.close()
        logger.info("job backend %s stopped", self.name)
