"""Raw Celery: the app a stock Celery worker runs for the baseline, with the settings the
service gives Celery (JSON only, late acknowledgement, a prefetch of one), and a task
making the writes the service makes for one job (bench/rq_raw.py's: the row claimed,
then marked done). `celery -A celery_raw worker`, with bench/ importable."""

import os

import rq_raw
from celery import Celery  # type: ignore[import-untyped]  # Celery ships no type hints

app = Celery("raw", broker=os.environ["REDIS_URL"], set_as_current=False)
app.conf.update(
    task_default_queue=os.environ["CELERY_QUEUE"],
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


@app.task(name="two_writes")  # type: ignore[untyped-decorator]  # Celery ships no type hints
def two_writes(database: str, job_id: str) -> None:
    rq_raw.run(database, job_id)
