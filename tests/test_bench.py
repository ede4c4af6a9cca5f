"""The benchmark harness, run with tiny counts so that it cannot rot: every case runs
against real servers and the report is written. The figures are not judged: timings never
decide a test.

The smoke run is three runs of `bench/run.py --smoke --only ...`, one test each, so that
the test processes run them side by side with the rest: together they take minutes,
mostly waiting for servers to start and stop."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import PROJECT_TEMPLATE, TEMPLATE_DIR, load_module, require_binary

REST = ["bake", "batch", "upload", "idle", "dashboard", "peers"]
CASES = {"enqueue", "e2e", *REST}
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


def smoke(cases: list[str], output: Path) -> dict[str, Any]:
    """A smoke run of `cases`; the cases measured, each figure a number."""
    require_binary("redis-server")
    # The bench starts a PostgreSQL server for the rows and peers that keep one.
    if load_module(PROJECT_TEMPLATE / "tests" / "pg_server.py").find_bindir() is None:
        require_binary("initdb")
    command = [sys.executable, "bench/run.py", "--smoke", "--only", ",".join(cases)]
    done = subprocess.run(
        [*command, "--output", str(output)],
        cwd=TEMPLATE_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    results: dict[str, Any] = json.loads((output / "only.json").read_text())
    assert set(results["cases"]) == set(cases)
    return results


def test_a_smoke_run_enqueues_on_every_backend_database_and_web_processes(tmp_path: Path) -> None:
    enqueue = smoke(["enqueue"], tmp_path)["cases"]["enqueue"]
    # Every backend enqueues on both databases from several web processes (the smoke
    # run's one group; `make bench` adds one process), beside its own bare endpoint.
    groups = [(db, 2) for db in ("sqlite", "postgresql")]
    measured = [(row["database"], row["web_processes"], row["variant"]) for row in enqueue]
    variants = ["create_task", "aiojobs", "rq", "celery", "bare endpoint, same row"]
    assert measured == [(db, web, variant) for db, web in groups for variant in variants]
    baselines = [bool(row.get("baseline")) for row in enqueue]
    assert baselines == [False, False, False, False, True] * len(groups)
    assert all(number > 0 for number in numbers(enqueue))


def test_a_smoke_run_measures_every_backend_end_to_end(tmp_path: Path) -> None:
    e2e = smoke(["e2e"], tmp_path)["cases"]["e2e"]
    # Every backend one by one and in groups (5 at a time in the smoke run), on both
    # databases, each beside its raw library: rq beside RQ's two stock worker classes,
    # celery beside a stock Celery worker and beside the rq backend.
    assert [(row["backend"], row["database"], row["per_transaction"]) for row in e2e] == [
        (backend, database, size)
        for database in ("sqlite", "postgresql")
        for backend in ("create_task", "aiojobs", "rq", "celery")
        for size in (1, 5)
        for _ in range(2 if backend in ("rq", "celery") else 1)
    ]
    stock = [row["baseline_name"].split(",")[0] for row in e2e if row["backend"] == "rq"]
    assert set(stock) == {
        "stock rq worker-pool x2 (forking Worker)",
        "stock rq worker-pool x2 (SimpleWorker)",
    }
    celery = [row["baseline_name"].split(",")[0] for row in e2e if row["backend"] == "celery"]
    assert set(celery) == {"stock celery worker x2 (prefork)", "the rq backend"}
    assert all("jobs_per_second" in row["baseline"] for row in e2e)
    assert all(number > 0 for number in numbers(e2e))


def test_a_smoke_run_measures_the_other_cases_and_the_report_is_written(tmp_path: Path) -> None:
    results = smoke(REST, tmp_path)
    cases = results["cases"]
    # Every peer measured through its own API, saying what it keeps.
    assert [row["name"] for row in cases["peers"]] == PEERS
    assert all(
        row["keeps"] and row["service"]["jobs_per_second"]["median"] > 0 for row in cases["peers"]
    )
    # Every case has its baseline beside it.
    for case in ("bake", "upload", "idle", "dashboard"):
        assert sum(bool(row.get("baseline")) for row in cases[case]) == 1, case
    # Every figure was measured: times, rates and sizes are all above zero.
    measured = numbers({name: case for name, case in cases.items() if name != "batch"})
    assert measured
    assert all(number > 0 for number in measured)
    assert cases["batch"]["service"]["processing_seconds"]["median"] > 0
    # Each dashboard page was served, and read the database.
    assert all(row["queries"] >= 1 for row in cases["dashboard"])

    # The report of a whole run: these cases, and the other two tests' cases as the last
    # `make bench` measured them (bench/results/latest.json).
    report = load_module(TEMPLATE_DIR / "bench" / "report.py")
    last = json.loads((TEMPLATE_DIR / "bench" / "results" / "latest.json").read_text())
    results["cases"] = {**last["cases"], **cases}
    markdown = report.markdown(results)
    for heading in (
        "## 1. Bake",
        "## 2. Enqueue",
        "## 3. End to end",
        "## 6. Idle",
        "## 7.",
        "## 8.",
    ):
        assert heading in markdown
    report.chart(results, tmp_path / "latest.png")
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
