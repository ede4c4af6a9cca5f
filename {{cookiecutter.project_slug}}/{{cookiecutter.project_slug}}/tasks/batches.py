"""Processing a batch of items, with progress saved at a bounded rate and resumable.

Replace `process_item` with your own work; the rest stays as it is.
"""

import asyncio
import operator
import time
import uuid
from typing import Any

from {{ cookiecutter.project_slug }}.jobs.registry import (
    JobContext,
    PermanentJobError,
    Row,
    describe,
    task,
)
from {{ cookiecutter.project_slug }}.models import Batch, BatchItems, BatchStatus, utcnow

# Progress is written about once a second: a rerun redoes at most about a second of work.
SAVE_EVERY_SECONDS = 1.0
# Items run in chunks of about this long. The clock is read, and the event loop's other
# tasks (requests, a cancellation) get their turn, between chunks rather than items.
CHUNK_SECONDS = 0.01
# Failures beyond this many are counted but not itemised.
MAX_RECORDED_FAILURES = 100


# ---- Replace this function with the work for one item. ------------------------------
async def process_item(item: Any) -> None:
    """Do the work for one item; raise to record the item as failed.

    It may run twice for the same item (a batch resumes from its last saved progress), so
    make a second run harmless. This example accepts non-empty strings and numbers.
    """
    if isinstance(item, bool) or not isinstance(item, str | int | float) or item == "":
        raise ValueError(f"cannot process {item!r}: expected a non-empty string or a number")


# --------------------------------------------------------------------------------------


class ProgressSaver:
    """Sizes the chunks of items run between checks, and decides when progress is due."""

    def __init__(self, every_seconds: float, chunk_seconds: float = CHUNK_SECONDS) -> None:
        self.every_seconds, self.chunk_seconds = every_seconds, chunk_seconds
        # One item at first, so that slow items never make a long chunk.
        self.chunk = 1
        self._saved_at = self._checked_at = time.monotonic()

    def due(self) -> bool:
        """Call after each chunk: sizes the next one; True when progress is to be saved."""
        now = time.monotonic()
        if now - self._checked_at < self.chunk_seconds:
            self.chunk *= 2
        elif self.chunk > 1:
            self.chunk //= 2
        self._checked_at = now
        if now - self._saved_at >= self.every_seconds:
            self._saved_at = now
            return True
        return False


# A retried batch is pending again, and resumes after its processed items.
BATCH_ROW = Row(
    Batch,
    unfinished=(BatchStatus.PENDING, BatchStatus.PROCESSING),
    failed=BatchStatus.FAILED,
    cancelled=BatchStatus.CANCELLED,
    ended_at="completed_at",
)


@task(timeout_seconds=3600, max_attempts=3, row=BATCH_ROW)
async def process_batch(ctx: JobContext, batch_id: str) -> dict[str, int]:
    batch = await ctx.session.get(Batch, uuid.UUID(batch_id))
    stored = await ctx.session.get(BatchItems, uuid.UUID(batch_id))
    if batch is None or stored is None:
        raise PermanentJobError(f"batch {batch_id} does not exist")
    if batch.status in (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS):
        return counts(batch)  # a rerun after the outcome was recorded
    await run(ctx, batch, stored.items)
    return counts(batch)


async def run(ctx: JobContext, batch: Batch, items: list[Any]) -> None:
    batch.status = BatchStatus.PROCESSING
    batch.started_at = batch.started_at or utcnow()
    await ctx.session.commit()
    # Resume where the last attempt saved its progress: earlier items are done.
    processed, failed, failures = batch.processed_items, batch.failed_items, list(batch.failures)
    saver = ProgressSaver(SAVE_EVERY_SECONDS)
    while processed < batch.total_items:
        end = min(processed + saver.chunk, batch.total_items)
        # The loop over the chunk's items is as bare as a plain one: an index kept per
        # item would cost a tenth of an item as cheap as the example. A failure is the
        # exception's rare case, and the loop goes on with the same iterator.
        chunk = iter(items[processed:end])
        while True:
            try:
                for item in chunk:
                    await process_item(item)
                break
            except Exception as error:
                failed += 1
                if len(failures) < MAX_RECORDED_FAILURES:
                    # The item that failed was the last one the iterator gave.
                    index = end - operator.length_hint(chunk) - 1
                    failures.append({"index": index, "error": describe(error)})
        processed = end
        if saver.due():
            await save(ctx, batch, processed, failed, failures)
        else:
            await asyncio.sleep(0)  # items that never await would hold the loop
    batch.status = BatchStatus.COMPLETED_WITH_ERRORS if failed else BatchStatus.COMPLETED
    batch.completed_at = utcnow()
    await save(ctx, batch, processed, failed, failures)


async def save(
    ctx: JobContext, batch: Batch, processed: int, failed: int, failures: list[dict[str, Any]]
) -> None:
    # A new list, not the same one changed: the JSON column sees only reassignment.
    batch.processed_items, batch.failed_items, batch.failures = processed, failed, list(failures)
    await ctx.session.commit()
    await ctx.progress(processed / batch.total_items)


def counts(batch: Batch) -> dict[str, int]:
    return {"processed_items": batch.processed_items, "failed_items": batch.failed_items}
