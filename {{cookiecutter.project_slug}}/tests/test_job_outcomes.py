"""Outcomes the database cannot store end their job once, with a clear error, and leave
its neighbours alone: a result strict JSON has no word for (NaN), a result the database
refuses (a trigger here, as a constraint of the user's would), an error whose text holds
a NUL{% if cookiecutter.database == "postgresql" %} (which PostgreSQL's text refuses){% endif %}."""

import asyncio

from sqlalchemy import text

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Job, JobStatus
from tests import tasks
from tests.test_jobs import FINISHED, submit, wait_for

NEIGHBOURS = 8
{%- if cookiecutter.database == "sqlite" %}
REFUSE_MARKED_RESULTS = [
    """CREATE TRIGGER refuse_marked_results BEFORE UPDATE OF result ON job
    WHEN NEW.result LIKE '%refuse-me%'
    BEGIN SELECT RAISE(ABORT, 'refused by a check'); END""",
]
{%- else %}
REFUSE_MARKED_RESULTS = [
    """CREATE FUNCTION refuse_marked_results() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.result::text LIKE '%refuse-me%' THEN
            RAISE EXCEPTION 'refused by a check';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER refuse_marked_results BEFORE UPDATE ON job
    FOR EACH ROW EXECUTE FUNCTION refuse_marked_results()""",
]
{%- endif %}


async def run_beside_neighbours(
    control: JobControl, sessionmaker: SessionMaker, odd: Job
) -> tuple[Job, list[Job]]:
    """The odd job and eight others submitted at once, so that their results are
    written together; each, once finished."""
    jobs = [odd, *(tasks.add.new_job(a=n, b=1) for n in range(NEIGHBOURS))]
    submitted = await asyncio.gather(*(submit(control, sessionmaker, job) for job in jobs))
    finished = [await wait_for(control, job.id, *FINISHED) for job in submitted]
    return finished[0], finished[1:]


def assert_neighbours_succeeded(neighbours: list[Job]) -> None:
    outcomes = [(job.status, job.attempts, job.result) for job in neighbours]
    assert outcomes == [(JobStatus.SUCCEEDED, 1, n + 1) for n in range(NEIGHBOURS)]


def runs_of(job: Job) -> list[str]:
    return [line for line in tasks.noted() if line.startswith(f"returned {job.id} ")]


async def test_a_result_strict_json_cannot_hold_fails_its_job_once(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    nan, neighbours = await run_beside_neighbours(
        control, sessionmaker, tasks.returns.new_job(what="nan")
    )
    assert (nan.status, nan.attempts, nan.error_type) == (JobStatus.FAILED, 1, "UnstorableResult")
    assert nan.error_message is not None
    assert "not JSON the job table can keep" in nan.error_message
    assert runs_of(nan) == [f"returned {nan.id} 1"]
    assert_neighbours_succeeded(neighbours)


async def test_a_result_the_database_refuses_fails_only_its_job_once(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        for statement in REFUSE_MARKED_RESULTS:
            await session.exec(text(statement))  # type: ignore[call-overload]  # DDL
        await session.commit()
    refused, neighbours = await run_beside_neighbours(
        control, sessionmaker, tasks.returns.new_job(what="refuse-me")
    )
    assert (refused.status, refused.attempts) == (JobStatus.FAILED, 1)
    assert refused.error_type == "ResultRefused"
    assert refused.error_message is not None
    assert "refused by a check" in refused.error_message
    assert runs_of(refused) == [f"returned {refused.id} 1"]
    assert_neighbours_succeeded(neighbours)


async def test_an_error_whose_text_holds_a_nul_is_recorded(
    control: JobControl, sessionmaker: SessionMaker
) -> None:
    job = await submit(control, sessionmaker, tasks.fail_with_nul.new_job())
    failed = await wait_for(control, job.id, JobStatus.FAILED)
    assert failed.attempts == 2
    assert failed.error_message == "a NUL \\x00 in the message"
