"""The tables behave alike on every database: aware UTC times, JSON, enums, unique keys."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError, StatementError

from {{ cookiecutter.project_slug }}.db import SessionMaker, create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.models import Batch, BatchItems, Job, JobStatus


@pytest.fixture
async def sessionmaker(migrated_database_url: str) -> AsyncIterator[SessionMaker]:
    engine = create_engine(migrated_database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_a_job_reads_back_with_its_types(sessionmaker: SessionMaker) -> None:
    key = str(uuid.uuid4())
    job = Job(name="example", arguments={"ids": [1, 2], "note": "é"}, idempotency_key=key)
    async with sessionmaker() as session:
        session.add(job)
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.get(Job, job.id)
    assert stored is not None
    assert stored.status is JobStatus.QUEUED
    assert stored.arguments == {"ids": [1, 2], "note": "é"}
    assert stored.created_at.tzinfo is not None
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_times_keep_their_instant_and_come_back_in_utc(sessionmaker: SessionMaker) -> None:
    noon_in_paris = datetime(2030, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    job = Job(name="example", run_after=noon_in_paris)
    async with sessionmaker() as session:
        session.add(job)
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.get(Job, job.id)
    assert stored is not None
    assert stored.run_after == noon_in_paris
    assert stored.run_after.utcoffset() == timedelta(0)


async def test_a_naive_time_is_refused(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        session.add(Job(name="example", run_after=datetime(2030, 6, 1, 12, 0)))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.commit()


async def test_an_idempotency_key_is_used_once(sessionmaker: SessionMaker) -> None:
    key = str(uuid.uuid4())
    async with sessionmaker() as session:
        session.add(Job(name="example", idempotency_key=key))
        await session.commit()
    async with sessionmaker() as session:
        session.add(Job(name="example", idempotency_key=key))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_batch_items_and_failures_are_json(sessionmaker: SessionMaker) -> None:
    batch = Batch(name="example", total_items=3)
    batch.failures = [{"index": 1, "error": "boom"}]
    async with sessionmaker() as session:
        session.add_all([batch, BatchItems(batch_id=batch.id, items=[{"sku": "a"}, 2, "three"])])
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.get(Batch, batch.id)
        items = await session.get(BatchItems, batch.id)
    assert stored is not None
    assert items is not None
    assert items.items == [{"sku": "a"}, 2, "three"]
    assert stored.failures == [{"index": 1, "error": "boom"}]
