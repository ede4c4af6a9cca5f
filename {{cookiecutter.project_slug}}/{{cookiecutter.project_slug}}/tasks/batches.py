"""Processing a batch of items, with progress saved at a bounded rate and resumable.

Replace `process_item` with your own work; the rest stays as it is.
"""

import time
import uuid
from typing import Any

from {{ cookiecutter.project_slug }}.jobs.registry import JobContext, PermanentJobError, task
from {{ cookiecutter.project_slug }}.models import Batch, BatchStatus, utcnow

# Progress is written at most once a second, and at least every this many items.
SAVE_EVERY_SECONDS = 1.0
SAVE_EVERY_ITEMS = 10_000
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
    """Decides when progress is due to be written: by time and by item count."""

    def __init__(self, every_seconds: float, every_items: int) -> None:
        self.every_seconds, self.every_items = every_seconds, every_items
        self._saved_at, self._items_since = time.monotonic(), 0

    def due(self) -> bool:
        self._items_since += 1
        now = time.monotonic()
        if self._items_since >= self.every_items or now - self._saved_at >= self.every_seconds:
            self._saved_at, self._items_since = now, 0
            return True
        return False


@task(timeout_seconds=3600, max_attempts=3)
async def process_batch(ctx: JobContext, batch_id: str) -> dict[str, int]:
    batch = await ctx.session.get(Batch, uuid.UUID(batch_id))
    if batch is None:
        raise PermanentJobError(f"batch {batch_id} does not exist")
    if batch.status in (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS):
        return counts(batch)  # a rerun after the outcome was recorded
    try:
        await run(ctx, batch)
    except Exception as error:
        if ctx.last_attempt:
            batch.status, batch.error = BatchStatus.FAILED, f"{type(error).__name__}: {error}"
            batch.completed_at = utcnow()
            await ctx.session.commit()
        raise
    return counts(batch)


async def run(ctx: JobContext, batch: Batch) -> None:
    batch.status = BatchStatus.PROCESSING
    batch.started_at = batch.started_at or utcnow()
    await ctx.session.commit()
    # Resume where the last attempt saved its progress: earlier items are done.
    processed, failed, failures = batch.processed_items, batch.failed_items, list(batch.failures)
    saver = ProgressSaver(SAVE_EVERY_SECONDS, SAVE_EVERY_ITEMS)
    for index in range(processed, batch.total_items):
        try:
            await process_item(batch.items[index])
        except Exception as error:
            failed += 1
            if len(failures) < MAX_RECORDED_FAILURES:
                failures.append({"index": index, "error": f"{type(error).__name__}: {error}"})
        processed = index + 1
        if saver.due():
            await save(ctx, batch, processed, failed, failures)
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
