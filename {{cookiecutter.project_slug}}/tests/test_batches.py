"""`/api/v1/batches`: items processed by a job, failures recorded, progress resumable."""

import time
import uuid

import httpx

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.jobs.registry import FAILURE_TEXT_LIMIT
from {{ cookiecutter.project_slug }}.models import Batch, BatchItems
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.tasks import batches
from {{ cookiecutter.project_slug }}.tasks.batches import ProgressSaver, process_batch
from tests.test_jobs import FINISHED, submit, wait_for


async def test_a_batch_completes_and_records_its_failed_items(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    items = [*range(20), "", None, "ok"]
    response = await client.post("/api/v1/batches", json={"name": "numbers", "items": items})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending"
    await wait_for(control, uuid.UUID(accepted["job_id"]), *FINISHED)
    shown = (await client.get(f"/api/v1/batches/{accepted['id']}")).json()
    assert shown["status"] == "completed_with_errors"
    assert (shown["total_items"], shown["processed_items"], shown["failed_items"]) == (23, 23, 2)
    assert [failure["index"] for failure in shown["failures"]] == [20, 21]
    assert shown["failures"][0]["error"].startswith("ValueError: cannot process ''")
    assert shown["started_at"] is not None
    assert shown["completed_at"] is not None


async def test_a_failure_is_stored_cut_to_a_bounded_length(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    """An error that quotes its whole input (here a 20 kB item) is not stored whole."""
    items = [{"payload": "x" * 20_000}, 1]
    response = await client.post("/api/v1/batches", json={"name": "huge", "items": items})
    assert response.status_code == 202, response.text
    await wait_for(control, uuid.UUID(response.json()["job_id"]), *FINISHED)
    shown = (await client.get(f"/api/v1/batches/{response.json()['id']}")).json()
    (failure,) = shown["failures"]
    assert failure["error"].startswith("ValueError: cannot process {'payload': 'xxx")
    assert len(failure["error"]) == FAILURE_TEXT_LIMIT
    assert failure["error"].endswith("…")


async def test_failures_spread_over_many_chunks_are_counted_and_placed(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    # Chunks grow to hundreds of items: every failed index is found again in them, runs
    # of failures included, and only the first MAX_RECORDED_FAILURES are itemised.
    bad = {*range(0, 1_000, 7), *range(500, 510)}
    items = ["" if index in bad else index for index in range(1_000)]
    response = await client.post("/api/v1/batches", json={"name": "spread", "items": items})
    assert response.status_code == 202, response.text
    accepted = response.json()
    await wait_for(control, uuid.UUID(accepted["job_id"]), *FINISHED)
    shown = (await client.get(f"/api/v1/batches/{accepted['id']}")).json()
    assert (shown["processed_items"], shown["failed_items"]) == (1_000, len(bad))
    recorded = [failure["index"] for failure in shown["failures"]]
    assert recorded == sorted(bad)[: batches.MAX_RECORDED_FAILURES]


async def test_a_retried_batch_resumes_where_it_stopped(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    # Items 0-9 would fail; a previous attempt saved progress past them, so they are not redone.
    batch = Batch(name="resumed", total_items=15, processed_items=10)
    job = process_batch.new_job(batch_id=str(batch.id))
    batch.job_id = job.id
    async with sessionmaker() as session:
        session.add_all([batch, BatchItems(batch_id=batch.id, items=[""] * 10 + [1] * 5)])
        await session.commit()
    await wait_for(control, (await submit(control, sessionmaker, job)).id, *FINISHED)
    async with sessionmaker() as session:
        done = await session.get(Batch, batch.id)
    assert done is not None
    assert (done.status, done.processed_items, done.failed_items) == ("completed", 15, 0)


async def test_empty_and_oversized_batches_get_422(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    empty = await client.post("/api/v1/batches", json={"name": "none", "items": []})
    assert empty.status_code == 422
    too_many = [1] * (settings.max_batch_items + 1)
    response = await client.post("/api/v1/batches", json={"name": "many", "items": too_many})
    assert response.status_code == 422
    assert "at most" in response.json()["detail"][0]["msg"]
    assert (await client.post("/api/v1/batches", json={"items": [1]})).status_code == 422
    assert (await client.get(f"/api/v1/batches/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/v1/batches/42")).status_code == 422


def test_chunks_grow_while_items_are_quick_and_shrink_when_slow() -> None:
    saver = ProgressSaver(every_seconds=3600, chunk_seconds=0.05)
    assert [saver.due() or saver.chunk for _ in range(4)] == [2, 4, 8, 16]
    time.sleep(0.06)  # a chunk that took longer than chunk_seconds
    assert (saver.due(), saver.chunk) == (False, 8)
    by_time = ProgressSaver(every_seconds=0)
    assert by_time.due()


async def test_one_batch_per_idempotency_key(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "nightly-import"}
    first, again = [
        (await client.post("/api/v1/batches", json=body, headers=headers)).json()
        for body in ({"name": "a", "items": [1]}, {"name": "b", "items": [2, 3]})
    ]
    assert (again["id"], again["job_id"]) == (first["id"], first["job_id"])
    await wait_for(control, uuid.UUID(first["job_id"]), *FINISHED)
