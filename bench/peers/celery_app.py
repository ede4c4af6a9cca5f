"""Celery's app (`celery -A celery_app worker`): broker and result backend on Redis."""

import os

from celery import Celery  # type: ignore[import-untyped]  # Celery ships no type hints

app = Celery("peers", broker=os.environ["PEER_URL"], backend=os.environ["PEER_URL"])
app.conf.update(
    task_default_queue=os.environ["PEER_QUEUE"], broker_connection_retry_on_startup=True
)


@app.task(name="noop")  # type: ignore[untyped-decorator]  # Celery ships no type hints
def noop() -> None:
    return None
