"""Schedules: each fire time runs once however many pollers look, a restart runs the fire
times it missed once (or skips them), and the API lists each with its fire times."""

import asyncio
import math
import time
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import col, select

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.jobs.poller import Poller
from {{ cookiecutter.project_slug }}.jobs.registry import Cron, Schedule, schedules
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings
from tests import tasks
from tests.test_jobs import FINISHED, wait_for

EVERY_SECOND = Cron("* * * * * *", arguments={"a": 1, "b": 2})


def poller(
    sessionmaker: SessionMaker, control: JobControl, settings: Settings, *schedules: Schedule
) -> Poller:
    # Never steady: these pollers only enqueue, they recover nothing.
    often = settings.model_copy(update={"job_poll_seconds": 0.01})
    return Poller(sessionmaker, control.backend, often, lambda: False, schedules)


async def jobs_of(sessionmaker: SessionMaker, schedule: Schedule) -> list[Job]:
    async with sessionmaker() as session:
        key = col(Job.idempotency_key).startswith(f"schedule:{schedule.id}:")
        return list((await session.exec(select(Job).where(key).order_by(col(Job.run_after)))).all())


async def test_each_fire_time_runs_once_however_many_pollers_look(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    schedule = Schedule(tasks.add, EVERY_SECOND)
    pollers = [poller(sessionmaker, control, settings, schedule) for _ in range(3)]
    started = time.monotonic()
    loops = await asyncio.gather(*(each.start() for each in pollers))
    # Until three fire times are enqueued, each looked at by all three pollers.
    deadline = started + 15
    while len(await jobs_of(sessionmaker, schedule)) < 3:
        assert time.monotonic() < deadline, "three fire times not enqueued within 15 s"
        await asyncio.sleep(0.05)
    for each in pollers:
        each.stop()
    await asyncio.gather(*loops)
    elapsed = time.monotonic() - started
    enqueued = await jobs_of(sessionmaker, schedule)
    fires = [job.run_after for job in enqueued]
    assert len(set(fires)) == len(fires), "a fire time was enqueued twice"
    # One job per fire time that went by, none made up.
    assert len(fires) <= math.ceil(elapsed) + 1
    assert all(fire.microsecond == 0 for fire in fires), "each due at its whole second"
    for job in enqueued:
        assert (await wait_for(control, job.id, *FINISHED)).result == 3


async def test_a_restart_runs_the_fire_times_it_missed_once_not_each(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    schedule = Schedule(tasks.add, EVERY_SECOND)
    await poller(sessionmaker, control, settings, schedule).poll_once()
    (first,) = await jobs_of(sessionmaker, schedule)
    # Down while three fire times go by, in the database's clock.
    async with sessionmaker() as session:
        now = await reads.database_time(session)
    await asyncio.sleep((first.run_after + timedelta(seconds=3.2) - now).total_seconds())
    # A new process, which has seen no fire time yet: one job for the three fire times.
    await poller(sessionmaker, control, settings, schedule).poll_once()
    before, after = await jobs_of(sessionmaker, schedule)
    assert after.run_after - before.run_after >= timedelta(seconds=3)


@pytest.mark.parametrize("catch_up", [True, False])
async def test_a_fire_time_missed_by_over_a_minute_runs_late_or_is_skipped(
    control: JobControl, sessionmaker: SessionMaker, settings: Settings, catch_up: bool
) -> None:
    async with sessionmaker() as session:
        missed = await reads.database_time(session) - timedelta(minutes=2)
    # Daily, last due two minutes ago.
    schedule = Schedule(
        tasks.add, Cron(f"{missed.minute} {missed.hour} * * *", arguments={"a": 1, "b": 1})
    )
    settings = settings.model_copy(update={"schedule_catch_up": catch_up})
    await poller(sessionmaker, control, settings, schedule).poll_once()
    enqueued = await jobs_of(sessionmaker, schedule)
    assert len(enqueued) == (1 if catch_up else 0)
    if catch_up:
        assert (await wait_for(control, enqueued[0].id, *FINISHED)).result == 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The cleanup's schedule, daily: the one schedule the API has to list.
    return settings.model_copy(update={"cleanup_schedule": "30 4 * * *"})


async def test_the_api_lists_each_schedule_with_its_fire_times_and_last_job(
    client: httpx.AsyncClient, control: JobControl, sessionmaker: SessionMaker, settings: Settings
) -> None:
    [cleanup] = [s for s in schedules(settings) if s.task.name == "cleanup"]
    await poller(sessionmaker, control, settings, cleanup).poll_once()
    [job] = await jobs_of(sessionmaker, cleanup)
    response = await client.get("/api/v1/schedules")
    assert response.status_code == 200
    [listed] = [s for s in response.json() if s["task"] == "cleanup"]
    assert (listed["id"], listed["cron"], listed["timezone"]) == (cleanup.id, "30 4 * * *", "UTC")
    assert listed["last_job_id"] == str(job.id)
    last, following = (
        datetime.fromisoformat(listed[key]) for key in ("last_fire_at", "next_fire_at")
    )
    assert (last, last.hour, last.minute) == (job.run_after, 4, 30)
    assert following - last == timedelta(days=1)


def test_a_bad_cron_expression_or_time_zone_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="cron expression"):
        Cron("61 * * * *")
    with pytest.raises(ValueError, match="time zone"):
        Cron("* * * * *", timezone="Mars/Olympus")
