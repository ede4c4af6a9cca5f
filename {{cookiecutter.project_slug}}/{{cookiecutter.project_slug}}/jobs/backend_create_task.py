"""Runs jobs as asyncio tasks inside the web process."""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class Backend:
    name = "create_task"

    def __init__(self) -> None:
        # The event loop keeps only weak references to tasks: without this set a
        # running job could be garbage-collected mid-flight.
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        logger.info("job backend %s started", self.name)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def stop(self, grace_seconds: float) -> None:
        """Let running work finish within the grace period, then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                logger.warning("cancelled %d jobs still running after the grace", len(pending))
        logger.info("job backend %s stopped", self.name)
