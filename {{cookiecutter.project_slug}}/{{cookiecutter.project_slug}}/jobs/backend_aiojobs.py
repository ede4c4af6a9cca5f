"""Runs jobs inside the web process on an aiojobs Scheduler with bounded concurrency."""

import logging
from collections.abc import Coroutine
from typing import Any

from aiojobs import Scheduler

logger = logging.getLogger(__name__)


class BackendFull(Exception):
    """The pending queue is full: the caller should retry later."""


class Backend:
    name = "aiojobs"

    def __init__(self, concurrency: int, pending_limit: int) -> None:
        self._concurrency = concurrency
        self._pending_limit = pending_limit
        self._scheduler: Scheduler | None = None

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the job backend is not started")
        return self._scheduler

    async def start(self) -> None:
        # Created here, not in __init__: a Scheduler binds to the running event loop.
        self._scheduler = Scheduler(limit=self._concurrency, pending_limit=self._pending_limit)
        logger.info(
            "job backend %s started (concurrency %d, pending limit %d)",
            self.name,
            self._concurrency,
            self._pending_limit,
        )

    async def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        # Scheduler.spawn waits while the pending queue is full; inside a request that
        # is a hang, so refuse instead and let the caller answer 503.
        if self.scheduler.pending_count >= self._pending_limit:
            coroutine.close()
            raise BackendFull(f"{self.scheduler.pending_count} jobs are already waiting")
        await self.scheduler.spawn(coroutine)

    @property
    def running(self) -> int:
        return self.scheduler.active_count

    async def stop(self, grace_seconds: float) -> None:
        """Let running work finish within the grace period, then cancel the rest."""
        await self.scheduler.wait_and_close(timeout=grace_seconds)
        logger.info("job backend %s stopped", self.name)
