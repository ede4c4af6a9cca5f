"""The batch case's raw baseline: the same item function the batch job calls, in a plain
loop over the same items, no progress tracking, in a process like the service's (its
modules imported, on uvicorn's event loop, uvloop). One loop untimed, as the service runs
one batch untimed, then `--runs` timed ones; prints their seconds as a JSON list.

Usage: python bench/batch.py --items 100000 --runs 9
"""

import argparse
import json
import time

import job_service.main  # noqa: F401  # what the service's process holds in memory
import uvloop
from job_service.tasks.batches import process_item


def items(count: int) -> list[str]:
    return [f"item-{index}" for index in range(count)]


async def raw_loops(count: int, runs: int) -> list[float]:
    work = items(count)
    seconds = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        for item in work:
            await process_item(item)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    options = parser.parse_args()
    print(json.dumps(uvloop.run(raw_loops(options.items, options.runs))))
