"""What the multi-host tests do from their client host: run by a baked project's Python
inside the client's network namespace (the test process has no route to the hosts), for
the whole test. Each line it reads is a command, a JSON list; it answers each with a line
of JSON. One process for every look: its imports cost more CPU than the looks.

    ["emails", N, URL...]          POST N emails, to the URLs in turn
    ["add-work", N, SECONDS, EXECUTOR]
                                   N `work` jobs into the job table, one by one; then
                                   those running on EXECUTOR (held) and how many are
                                   where (seen)
    ["jobs"]                       every job: name, status, attempts, executor
    ["executors"]                  the executor rows
    ["succeeded", URL...]          jobs_total{status="succeeded"} at each URL
    ["up", URL...]                 whether every URL answers /health
"""

import asyncio
import json
import os
import random
import sys
from collections import Counter
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def database(action: str, *args: str) -> Any:
    from job_service.db import create_engine, create_sessionmaker
    from job_service.models import Executor, Job
    from sqlmodel import select

    engine = create_engine(os.environ["DATABASE_URL"])
    try:
        async with create_sessionmaker(engine)() as session:
            if action == "add-work":
                count, seconds, executor_id = int(args[0]), float(args[1]), args[2]
                for _ in range(count):
                    # One at a time, at uneven gaps: spaced as evenly as the pollers poll,
                    # the inserts would lock into step with one poller, which then takes
                    # them all.
                    session.add(Job(name="work", arguments={"seconds": seconds}))
                    await session.commit()
                    await asyncio.sleep(random.uniform(0.02, 0.25))
                # A busy machine can be slow to start them: wait a while for some.
                for _ in range(50):
                    work = (await session.exec(select(Job).where(Job.name == "work"))).all()
                    await session.commit()
                    held = [
                        str(job.id)
                        for job in work
                        if job.status == "running" and str(job.executor_id) == executor_id
                    ]
                    if held:
                        break
                    await asyncio.sleep(0.2)
                seen = Counter(f"{job.status} on {job.executor_id}" for job in work)
                return {"held": held, "seen": dict(seen)}
            if action == "jobs":
                rows = (await session.exec(select(Job))).all()
                return [
                    {
                        "id": str(job.id),
                        "name": job.name,
                        "status": job.status,
                        "attempts": job.attempts,
                        "lost_attempts": job.lost_attempts,
                        "executor_id": str(job.executor_id),
                    }
                    for job in rows
                ]
            rows = (await session.exec(select(Executor))).all()
            return [{"id": str(row.id), "pid": row.pid} for row in rows]
    finally:
        await engine.dispose()


def emails(count: int, urls: list[str]) -> dict[str, Any]:
    answers: list[int] = []
    ids = []
    with httpx.Client(timeout=30, headers={"X-API-Key": os.environ["API_KEYS"]}) as client:
        for n in range(count):
            email = {"to": "ada@example.com", "subject": f"Hosts {n}", "body": "Hello."}
            response = client.post(f"{urls[n % len(urls)]}/api/v1/emails", json=email)
            answers.append(response.status_code)
            if response.status_code == 202:
                ids.append(response.json()["job_id"])
    return {"statuses": answers, "job_ids": ids}


def succeeded(urls: list[str]) -> dict[str, float]:
    counts = {}
    for url in urls:
        total = 0.0
        families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
        for family in families:
            for sample in family.samples:
                if sample.name == "jobs_total" and sample.labels.get("status") == "succeeded":
                    total += sample.value
        counts[url] = total
    return counts


def up(urls: list[str]) -> bool:
    try:
        return all(httpx.get(f"{url}/health", timeout=2).status_code == 200 for url in urls)
    except httpx.TransportError:
        return False


def answer(command: str, args: list[str]) -> Any:
    if command == "emails":
        return emails(int(args[0]), args[1:])
    if command == "succeeded":
        return succeeded(args)
    if command == "up":
        return up(args)
    return asyncio.run(database(command, *args))


def main() -> None:
    for line in sys.stdin:
        command, *args = json.loads(line)
        print(json.dumps(answer(command, args)), flush=True)


if __name__ == "__main__":
    main()
