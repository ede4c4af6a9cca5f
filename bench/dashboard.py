"""The dashboard's pages over a job table of many rows: each page's time to render, in
process through ASGI (no network), and the SQL statements it runs. Fills the database
at DATABASE_URL (migrated, empty) first. Prints JSON.

Usage: python dashboard.py --jobs 100000 --runs 15
"""

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from job_service.main import create_app
from job_service.models import Job, JobStatus
from job_service.settings import Settings
from sqlalchemy import event, insert

TASKS = ("send_email", "process_document", "process_batch", "generate_report", "cleanup")
TRACEBACK = 'Traceback (most recent call last):\n  File "tasks.py", line 9\nOSError: refused\n'


def row(number: int, now: datetime, pick: random.Random) -> dict[str, Any]:
    """Mostly finished jobs over the last two hours; some failed, some queued for later."""
    chance = pick.random()
    finished = now - timedelta(seconds=pick.uniform(0, 7200))
    job: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": pick.choice(TASKS),
        "status": JobStatus.SUCCEEDED,
        "arguments": {"number": number},
        "result": {"ok": True},
        "attempts": 1,
        "max_attempts": 3,
        "timeout_seconds": 300.0,
        "progress": 1.0,
        "run_after": finished - timedelta(seconds=2),
        "created_at": finished - timedelta(seconds=2),
        "started_at": finished - timedelta(seconds=1),
        "finished_at": finished,
        # Every row has every key: one INSERT for all of them.
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
    }
    if chance < 0.05:
        job |= {"status": JobStatus.FAILED, "result": None, "attempts": 3}
        job |= {"error_type": "OSError", "error_message": "refused", "error_traceback": TRACEBACK}
    elif chance < 0.06:
        job |= {"status": JobStatus.CANCELLED, "result": None}
    elif chance < 0.08:
        # Due tomorrow: nothing runs them while the pages are measured.
        later = now + timedelta(days=1)
        job |= {"status": JobStatus.QUEUED, "result": None, "attempts": 0, "progress": 0.0}
        job |= {"run_after": later, "started_at": None, "finished_at": None}
    return job


async def measure(jobs: int, runs: int) -> dict[str, Any]:
    # Polls and heartbeats far apart: the statements counted are the page's own.
    settings = Settings(job_poll_seconds=3600, job_lease_seconds=3600, cleanup_schedule="")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        sessionmaker = app.state.sessionmaker
        now, pick = datetime.now(UTC), random.Random(1)
        engine = sessionmaker.kw["bind"]
        async with engine.begin() as connection:
            for start in range(0, jobs, 5000):
                rows = [row(n, now, pick) for n in range(start, min(jobs, start + 5000))]
                await connection.execute(insert(Job), rows)
            failure = row(-1, now, pick) | {"status": JobStatus.FAILED}
            await connection.execute(insert(Job), [failure])
        statements = 0

        def counted(*_: object) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine.sync_engine, "before_cursor_execute", counted)
        pages = {
            "overview": "/dashboard",
            "jobs, newest": "/dashboard/jobs",
            "jobs, failed": "/dashboard/jobs?status=failed",
            "jobs, one task": "/dashboard/jobs?name=process_batch",
            "jobs, page 100": "/dashboard/jobs?page=100",
            "one job": f"/dashboard/jobs/{failure['id']}",
            "schedules": "/dashboard/schedules",
            "baseline: GET /api/v1/jobs?limit=50 (JSON)": "/api/v1/jobs?limit=50",
        }
        transport = httpx.ASGITransport(app=app)
        results: dict[str, Any] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for name, path in pages.items():
                (await client.get(path)).raise_for_status()  # warm: templates compiled
                times, statements = [], 0
                for _ in range(runs):
                    started = time.perf_counter()
                    response = await client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                results[name] = {"ms": times, "queries": statements / runs}
        return {"jobs": jobs, "pages": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    print(json.dumps(asyncio.run(measure(options.jobs, options.runs))))


if __name__ == "__main__":
    main()
