"""Concurrent writes that share one transaction.

Every job is claimed, and recorded when it succeeds: two commits of its own, unless the
jobs running at the same moment share them through a `Batcher`. An item submitted while
the batcher is idle is written at once; items submitted while a write is under way wait
for it and go together in the next one, so a batch grows with the load and a lone job
waits for nothing.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(self, write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]]) -> None:
        """`write` takes a batch and returns one result per item, in the same order."""
        self._write = write
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Write `item` with whatever else is waiting; its result, or the write's error."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        # The write runs in its own task: a caller cancelled while it waits leaves the
        # write it shares with others alone.
        return await future

    async def drained(self) -> None:
        """Return once no write is under way or waiting."""
        if self._writer is not None:
            await asyncio.wait([self._writer])

    async def _write_waiting(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._writer = None
            # Only this task being cancelled leaves futures pending: never keep a caller
            # waiting for a write that will not come.
            for _, future in batch + self._waiting:
                future.cancel()
