"""Every peer measured once, on servers of its own: `python -m peers [--jobs N]` from bench/."""

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from harness import redis_server
from pg_server import postgres_server

from peers import PEERS, measure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--peer", action="append", help="only this peer (repeatable)")
    options = parser.parse_args()
    names = options.peer or [peer.name for peer in PEERS]
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peers-") as folder:
        work = Path(folder)
        with (
            redis_server(work / "redis.log") as redis_url,
            postgres_server(work / "postgresql", work / "postgresql.log") as postgres_url,
        ):
            for peer in PEERS:
                if peer.name in names:
                    figures = measure(peer, options.jobs, redis_url, postgres_url, work / "logs")
                    results.append({**asdict(peer), "jobs": options.jobs, **figures})
    seconds = round(time.perf_counter() - started, 1)
    print(json.dumps({"seconds": seconds, "peers": results}, indent=2))


if __name__ == "__main__":
    main()
