"""Raw RQ: the function stock RQ workers run for each job, making the writes the service
makes for one: the row claimed (`running`), then marked done, two commits. Its
connection is kept for the worker process's life: a forking worker starts every job
without one, RQ's SimpleWorker reuses it. sqlite3 for a file path, psycopg for a
PostgreSQL URL. bench/rq_stock.py imports it before the workers start."""

import sqlite3
from datetime import UTC, datetime
from typing import Any

import psycopg

_connection: Any = None


def _connect(database: str) -> Any:
    global _connection
    if _connection is None:
        if database.startswith("postgresql://"):
            _connection = psycopg.connect(database, autocommit=True)
        else:
            _connection = sqlite3.connect(database, timeout=30, isolation_level=None)
    return _connection


def run(database: str, job_id: str) -> None:
    connection = _connect(database)
    postgres = database.startswith("postgresql://")
    mark = "%s" if postgres else "?"
    key = f"{mark}::uuid" if postgres else mark

    def now() -> object:
        moment = datetime.now(UTC)
        return moment if postgres else moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    connection.execute(
        f"UPDATE job SET status = 'running', started_at = {mark} WHERE id = {key}",
        (now(), job_id),
    )
    connection.execute(
        f"UPDATE job SET status = 'succeeded', finished_at = {mark} WHERE id = {key}",
        (now(), job_id),
    )
