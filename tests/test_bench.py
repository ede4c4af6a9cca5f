"""The benchmark harness, run with tiny counts so that it cannot rot: every case runs
against real servers and the report is written. The figures are not judged: timings never
decide a test."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_TEMPLATE, TEMPLATE_DIR, load_module, require_binary

CASES = {"bake", "enqueue", "e2e", "batch", "upload", "idle", "dashboard", "peers"}
PEERS = [
    "SAQ on Redis",
    "taskiq on Redis",
    "Dramatiq on Redis",
    "Celery on Redis",
    "ARQ on Redis",
    "SAQ on PostgreSQL",
    "Procrastinate on PostgreSQL",
    "Procrastinate on PostgreSQL, 100 at a time",
]


def numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [number for item in value.values() for number in numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in numbers(item)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_a_smoke_run_measures_every_case_and_writes_the_report(tmp_path: Path) -> None:
    require_binary("redis-server")
    # The bench starts a PostgreSQL server for the e2e rows and the peers that keep one.
    if load_module(PROJECT_TEMPLATE / "tests" / "pg_server.py").find_bindir() is None:
        require_binary("initdb")
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(tmp_path)],
        cwd=TEMPLATE_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    cases = results["cases"]
    assert set(cases) == CASES
    # Every backend one by one and in groups (5 at a time in the smoke run), on both
    # databases.
    assert [(row["backend"], row["database"], row["per_transaction"]) for row in cases["e2e"]] == [
        (backend, database, size)
        for database in ("sqlite", "postgresql")
        for backend in ("create_task", "aiojobs", "rq")
        for size in (1, 5)
    ]
    # Every peer measured through its own API, saying what it keeps.
    assert [row["name"] for row in cases["peers"]] == PEERS
    assert all(
        row["keeps"] and row["service"]["jobs_per_second"]["median"] > 0 for row in cases["peers"]
    )
    # Every backend enqueues on both databases from 1 and from several web processes,
    # each group beside its own bare endpoint.
    groups = [(db, web) for db in ("sqlite", "postgresql") for web in (1, 2)]
    enqueue = [(row["database"], row["web_processes"], row["variant"]) for row in cases["enqueue"]]
    variants = ["create_task", "aiojobs", "rq", "bare endpoint, same row"]
    assert enqueue == [(db, web, variant) for db, web in groups for variant in variants]
    baselines = [bool(row.get("baseline")) for row in cases["enqueue"]]
    assert baselines == [False, False, False, True] * len(groups)
    # Every case has its baseline beside it.
    for case in ("bake", "upload", "idle", "dashboard"):
        assert sum(bool(row.get("baseline")) for row in cases[case]) == 1, case
    assert all("jobs_per_second" in row["baseline"] for row in cases["e2e"])
    # Every figure was measured: times, rates and sizes are all above zero.
    measured = numbers({name: case for name, case in cases.items() if name != "batch"})
    assert measured
    assert all(number > 0 for number in measured)
    assert cases["batch"]["service"]["processing_seconds"]["median"] > 0
    report = (tmp_path / "latest.md").read_text()
    # Each dashboard page was served, and read the database.
    assert all(row["queries"] >= 1 for row in cases["dashboard"])
    for heading in (
        "## 1. Bake",
        "## 2. Enqueue",
        "## 3. End to end",
        "## 6. Idle",
        "## 7.",
        "## 8.",
    ):
        assert heading in report
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
