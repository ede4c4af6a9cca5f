"""The batcher the runner writes claims and results through: items that arrive during a
write share the next one, each caller gets its own result or the write's error."""

import asyncio
from collections.abc import Sequence

import pytest

from {{ cookiecutter.project_slug }}.jobs.batching import Batcher


class Writes:
    """A write that keeps what it was given and holds the first batch until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_started.set()
            await self.release.wait()
        if 13 in items:
            raise ValueError("13 is refused")
        return [item * 10 for item in items]


async def test_a_lone_item_is_written_at_once_and_later_ones_share_the_next_write() -> None:
    writes = Writes()
    batcher = Batcher(writes)
    first = asyncio.create_task(batcher.submit(1))
    await writes.first_started.wait()
    later = [asyncio.create_task(batcher.submit(item)) for item in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert writes.batches == [[1]]  # the others wait for the write under way
    writes.release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert writes.batches == [[1], [2, 3, 4]]


async def test_a_failed_write_fails_its_batch_only() -> None:
    writes = Writes()
    batcher = Batcher(writes)
    first = asyncio.create_task(batcher.submit(1))
    await writes.first_started.wait()
    failing = [asyncio.create_task(batcher.submit(item)) for item in (12, 13)]
    await asyncio.sleep(0)
    writes.release.set()
    assert await first == 10
    for task in failing:
        with pytest.raises(ValueError, match="13 is refused"):
            await task
    assert await batcher.submit(5) == 50  # the next write goes ahead


async def test_a_caller_cancelled_while_waiting_leaves_the_others_write_alone() -> None:
    writes = Writes()
    batcher = Batcher(writes)
    first = asyncio.create_task(batcher.submit(1))
    await writes.first_started.wait()
    cancelled, kept = (asyncio.create_task(batcher.submit(item)) for item in (2, 3))
    await asyncio.sleep(0)
    cancelled.cancel()
    writes.release.set()
    assert (await first, await kept) == (10, 30)
    assert cancelled.cancelled()
    assert writes.batches == [[1], [2, 3]]


async def test_drained_waits_for_a_write_whose_callers_were_cancelled() -> None:
    writes = Writes()
    batcher = Batcher(writes)
    caller = asyncio.create_task(batcher.submit(1))
    await writes.first_started.wait()
    caller.cancel()
    drained = asyncio.create_task(batcher.drained())
    await asyncio.sleep(0.01)
    assert not drained.done()  # the write is still under way
    writes.release.set()
    await drained
    assert caller.cancelled()
    assert writes.batches == [[1]]
