"""The batch case's raw baseline, in one process with the baked project importable: the
same item function the batch job calls, in a plain loop over the same items, no
progress tracking. Prints its seconds as JSON.

Usage: python bench/batch.py --items 100000
"""

import argparse
import asyncio
import json
import time

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
    print(json.dumps({"seconds": asyncio.run(raw_loop(options.items))}))
