"""Raw RQ: the function the stock forking `rq worker` runs for each job. It marks the
job's row done, as the usual pattern does, with a connection of its own (a fork per job
keeps nothing between jobs)."""

import sqlite3
from datetime import UTC, datetime


def mark_done(database: str, job_id: str) -> None:
    finished = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(database, timeout=30) as connection:
        connection.execute(
            "UPDATE job SET status = 'succeeded', finished_at = ? WHERE id = ?",
            (finished, job_id),
        )
    connection.close()
