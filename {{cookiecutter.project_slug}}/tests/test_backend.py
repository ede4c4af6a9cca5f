"""The job backend runs work in the background and stops within its grace."""
{%- if cookiecutter.job_backend == "create_task" %}

import asyncio

from {{ cookiecutter.project_slug }}.jobs.backend import Backend
{%- elif cookiecutter.job_backend == "aiojobs" %}

import asyncio

import pytest

from {{ cookiecutter.project_slug }}.jobs.backend import Backend, BackendFull
{%- else %}

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from {{ cookiecutter.project_slug }}.jobs.backend import Backend
{%- endif %}
{%- if cookiecutter.job_backend == "create_task" %}


async def test_stop_waits_for_running_work_within_the_grace() -> None:
    backend = Backend()
    await backend.start()
    finished: list[str] = []

    async def work(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    backend.spawn(work("quick", 0.05))
    backend.spawn(work("slow", 30))
    assert backend.running == 2
    await backend.stop(grace_seconds=0.5)
    assert finished == ["quick"]
    assert backend.running == 0
{%- elif cookiecutter.job_backend == "aiojobs" %}


async def test_stop_waits_for_running_work_within_the_grace() -> None:
    backend = Backend(concurrency=4, pending_limit=10)
    await backend.start()
    finished: list[str] = []

    async def work(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    await backend.spawn(work("quick", 0.05))
    await backend.spawn(work("slow", 30))
    assert backend.running == 2
    await backend.stop(grace_seconds=0.5)
    assert finished == ["quick"]


async def test_a_full_pending_queue_refuses_instead_of_waiting() -> None:
    backend = Backend(concurrency=1, pending_limit=1)
    await backend.start()
    release = asyncio.Event()
    await backend.spawn(release.wait())  # runs
    await backend.spawn(release.wait())  # waits for a free slot
    with pytest.raises(BackendFull):
        await asyncio.wait_for(backend.spawn(release.wait()), timeout=1)
    release.set()
    await backend.stop(grace_seconds=1)
{%- else %}


async def test_start_connects_to_redis(redis_url: str) -> None:
    backend = Backend(redis_url, "test")
    await backend.start()
    assert backend.queue.count == 0
    await backend.stop(grace_seconds=0)


async def test_start_fails_when_redis_is_unreachable() -> None:
    backend = Backend("redis://127.0.0.1:1/0", "test")
    with pytest.raises(RedisConnectionError):
        await backend.start()
{%- endif %}
