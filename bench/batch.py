"""The batch case's raw baseline: the same item function the batch job calls, in a plain
loop over the same items, no progress tracking, in a process like the service's (its
modules imported, on uvicorn's event loop, uvloop). Prints its seconds as JSON.

Usage: python bench/batch.py --items 100000
"""

import argparse
import json
import time

import job_service.main  # noqa: F401  # what the service's process holds in memory
import uvloop
from job_service.tasks.batches import process_item


def items(count: int) -> list[str]:
    return [f"item-{index}" for index in range(count)]


async def raw_loop(count: int) -> float:
    work = items(count)
    started = time.perf_counter()
    for item in work:
        await process_item(item)
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    options = parser.parse_args()
    print(json.dumps({"seconds": uvloop.run(raw_loop(options.items))}))
