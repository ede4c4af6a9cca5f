"""A bounded HTTP load, from its own process: a fixed number of POSTs at a fixed
concurrency over keep-alive connections. Prints requests/s, latency percentiles and the
answers that were not 2xx (by status, or by the transport error) as JSON.

Usage: python bench/load.py URL --requests 2000 --concurrency 16 --body '{"json": 1}'
"""

import argparse
import asyncio
import json
import statistics
import time

import httpx


async def load(url: str, body: object, requests: int, concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    failures: dict[str, int] = {}
    left = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def user() -> None:
            nonlocal failures
            for _ in left:
                started = time.perf_counter()
                try:
                    status = str((await client.post(url, json=body)).status_code)
                except httpx.TransportError as error:
                    status = type(error).__name__
                latencies.append(time.perf_counter() - started)
                if not status.startswith("2"):
                    failures[status] = failures.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests_per_second": requests / seconds,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--body", default="{}")
    options = parser.parse_args()
    result = asyncio.run(
        load(options.url, json.loads(options.body), options.requests, options.concurrency)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
