"""Tasks the tests run, each showing one behaviour of the job layer.

They note what they do in the file named by TEST_RUNS_LOG, so a test can see runs
that happened in another process.
"""

import asyncio
import contextlib
import os
import time
from pathlib import Path

from sqlmodel import col, select

from {{ cookiecutter.project_slug }}.jobs.registry import JobContext, task
from {{ cookiecutter.project_slug }}.models import Email


def note(line: str) -> None:
    # One short append per line: lines from several processes do not interleave.
    with Path(os.environ["TEST_RUNS_LOG"]).open("a") as log:
        log.write(line + "\n")


def noted() -> list[str]:
    path = Path(os.environ["TEST_RUNS_LOG"])
    return path.read_text().splitlines() if path.exists() else []


@task(max_attempts=1)
async def add(ctx: JobContext, a: int, b: int) -> int:
    return a + b


@task(max_attempts=3, backoff_seconds=0.2)
async def always_fail(ctx: JobContext, message: str) -> None:
    note(f"failing {ctx.job_id} {ctx.attempt}")
    raise RuntimeError(message)


@task(timeout_seconds=0.5, max_attempts=1)
async def overrun(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)


@task(timeout_seconds=120, max_attempts=1)
async def nap(ctx: JobContext, seconds: float) -> str:
    await ctx.progress(0.5, "napping")
    note(f"napping {ctx.job_id}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        note(f"stopped {ctx.job_id}")
        raise
    return "rested"


@task(max_attempts=1)
async def fail_first_run(ctx: JobContext, key: str) -> str:
    if f"failed {key}" not in noted():
        note(f"failed {key}")
        raise RuntimeError("the first run fails")
    return "second run"


@task(max_attempts=3, timeout_seconds=30)
async def work(ctx: JobContext, seconds: float) -> dict[str, float]:
    note(f"run {ctx.job_id} {ctx.attempt} {os.getpid()}")
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@task(max_attempts=3)
async def returns(ctx: JobContext, what: str) -> object:
    """A result strict JSON has no word for (NaN), or one marked with `what`."""
    note(f"returned {ctx.job_id} {ctx.attempt}")
    return {"x": float("nan")} if what == "nan" else {"marked": what}


@task(max_attempts=2, backoff_seconds=0.1)
async def fail_with_nul(ctx: JobContext) -> None:
    raise ValueError("a NUL \x00 in the message")


def block_until_released(key: str) -> None:
    """Blocking work that ends once the test notes `release {key}`."""
    while f"release {key}" not in noted():
        time.sleep(0.02)
    note(f"ended {key}")


@task(timeout_seconds=60, max_attempts=1)
async def threaded(ctx: JobContext, key: str) -> None:
    """Its work in a thread, which a cancel cannot stop."""
    note(f"started {key}")
    await ctx.to_thread(block_until_released, key)


@task(timeout_seconds=0.5, max_attempts=3)
async def stubborn(ctx: JobContext, key: str) -> None:
    """Swallows its cancellation, and so its timeout, until the test notes `release {key}`."""
    note(f"started {key}")
    while f"release {key}" not in noted():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.02)
    note(f"ended {key}")


async def from_the_next_release(ctx: JobContext) -> str:
    return "new code"


def register_the_next_release() -> None:
    """Register the task only the next release of the code has: in the processes given
    TEST_NEXT_RELEASE (tests/app.py, tests/worker.py), at their start."""
    task(max_attempts=1)(from_the_next_release)


@task(timeout_seconds=60, max_attempts=1)
async def write_then_wait(ctx: JobContext, key: str) -> None:
    """Adds a row, reads (which would flush the change), then awaits slow I/O (here, the
    test's go-ahead) before its commit."""
    ctx.session.add(Email(to="slow@example.com", subject=key, body="written late"))
    await ctx.session.exec(select(Email).where(col(Email.subject) == key))
    note(f"waiting {key}")
    await ctx.to_thread(block_until_released, key)
    await ctx.session.commit()
