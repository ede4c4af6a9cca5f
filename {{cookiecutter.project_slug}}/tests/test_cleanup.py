"""The periodic cleanup: expired documents, reports and jobs go; fresh ones stay; a file
already gone does not stop it; it is enqueued by the poller, once per period."""

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Document, Job, JobStatus, Report, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.storage import Storage
from tests import tasks
from tests.test_jobs import FINISHED, wait_for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    update = {
        "cleanup_schedule": "* * * * * *",  # every second
        "document_retention_days": 1,
        "report_retention_days": 1,
        "job_retention_days": 1,
    }
    return settings.model_copy(update=update)


def stored(settings: Settings, folder: str) -> tuple[str, Path]:
    name = uuid.uuid4().hex
    path = Storage(settings.storage_dir).path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("content")
    return name, path


async def test_cleanup_removes_what_expired_and_keeps_the_rest(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    old, fresh = utcnow() - timedelta(days=2), utcnow()
    old_name, old_file = stored(settings, "documents")
    fresh_name, fresh_file = stored(settings, "documents")
    report_name, report_file = stored(settings, "reports")
    expired_document = Document(stored_name=old_name, archived_at=old)
    missing_file = Document(stored_name=uuid.uuid4().hex, archived_at=old)  # file already gone
    kept_document = Document(stored_name=fresh_name, archived_at=fresh)
    expired_report = Report(kind="batches_by_status_and_day", stored_name=report_name)
    expired_report.completed_at = old
    expired_job = tasks.add.new_job(a=1, b=1)
    expired_job.status, expired_job.finished_at = JobStatus.SUCCEEDED, old
    kept_job = tasks.add.new_job(a=2, b=2)
    kept_job.status, kept_job.finished_at = JobStatus.SUCCEEDED, fresh
    rows = [expired_document, missing_file, kept_document, expired_report, expired_job, kept_job]
    async with sessionmaker() as session:
        session.add_all(rows)
        await session.commit()

    # One run that started after the rows existed has finished; an earlier run may have
    # removed them already, so count what all the runs removed.
    await wait_for_periodic_cleanup(control, sessionmaker, after=utcnow())
    async with sessionmaker() as session:
        runs = (await session.exec(select(Job).where(col(Job.name) == "cleanup"))).all()
    finished = [await wait_for(control, run.id, *FINISHED) for run in runs]
    removed = {kind: sum(run.result[kind] for run in finished) for kind in finished[0].result}
    assert removed == {"documents": 2, "reports": 1, "jobs": 1}
    assert not old_file.exists()
    assert not report_file.exists()
    assert fresh_file.exists()
    async with sessionmaker() as session:
        assert await session.get(Document, kept_document.id) is not None
        assert await session.get(Document, expired_document.id) is None
        assert await session.get(Report, expired_report.id) is None
        assert await session.get(Job, kept_job.id) is not None
        assert await session.get(Job, expired_job.id) is None


async def wait_for_periodic_cleanup(
    control: JobControl, sessionmaker: SessionMaker, after: datetime
) -> Job:
    """The first cleanup the poller enqueues by itself after `after`, once finished."""
    enqueued_after = (col(Job.name) == "cleanup") & (col(Job.created_at) > after)
    for _ in range(500):
        async with sessionmaker() as session:
            found = (await session.exec(select(Job).where(enqueued_after))).first()
        if found is not None:
            return await wait_for(control, found.id, *FINISHED)
        await asyncio.sleep(0.02)
    raise AssertionError("no cleanup job was enqueued")
