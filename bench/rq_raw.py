"""Raw RQ: the function the stock forking `rq worker` runs for each job. It marks the
job's row done, as the usual pattern does, with a connection of its own (a fork per job
keeps nothing between jobs): sqlite3 for a file path, psycopg for a PostgreSQL URL.
bench/rq_stock.py imports it before the worker forks."""

import sqlite3
from datetime import UTC, datetime

import psycopg


def mark_done(database: str, job_id: str) -> None:
    finished = datetime.now(UTC)
    if database.startswith("postgresql://"):
        with psycopg.connect(database) as postgres:
            postgres.execute(
                "UPDATE job SET status = 'succeeded', finished_at = %s WHERE id = %s::uuid",
                (finished, job_id),
            )
        return
    with sqlite3.connect(database, timeout=30) as connection:
        connection.execute(
            "UPDATE job SET status = 'succeeded', finished_at = ? WHERE id = ?",
            (finished.strftime("%Y-%m-%d %H:%M:%S.%f"), job_id),
        )
    connection.close()
