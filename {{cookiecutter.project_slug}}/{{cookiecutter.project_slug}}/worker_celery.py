"""Celery's own worker runs the jobs:

    celery -A {{ cookiecutter.project_slug }}.worker worker [--concurrency N]

on Celery's prefork pool. Each child process has one event loop and one database engine
for its life, in a thread (jobs/loop.py, started in `worker_process_init`): there the
shared runner claims, runs and records each job Celery hands the child, keeps its
executor's heartbeat, and the poller sends due, delayed and lost jobs to Redis. Celery's
events, `celery inspect` and Flower see each job as a task of Celery's, by its job's id
and task name.
"""

import concurrent.futures
import logging
import os
import signal
import threading
import uuid
from types import FrameType
from typing import Any

from billiard.process import active_children
from celery import signals
from celery.exceptions import Ignore, Reject, Retry

from {{ cookiecutter.project_slug }} import (
    metrics,
    tasks,  # noqa: F401  # registers every task
)
from {{ cookiecutter.project_slug }}.jobs.backend import RUN_JOB, celery_app
from {{ cookiecutter.project_slug }}.jobs.loop import STOP_SECONDS, JobLoop, exit_after
from {{ cookiecutter.project_slug }}.jobs.registry import TASKS
from {{ cookiecutter.project_slug }}.jobs.runner import CANCEL_GRACE_SECONDS
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import get_settings

logger = logging.getLogger(__name__)

settings = get_settings()
# Configured on import, before Celery's command line starts the worker: what it warns
# of at start is logged as the service logs (JSON with LOG_FORMAT=json) too.
configure_logging(settings.log_level, settings.log_format)
logging.captureWarnings(True)
app = celery_app(settings)

_jobs: JobLoop | None = None
# What the main process sends its children at a warm stop.
STOP_SIGNAL = signal.SIGUSR2


def _check_the_visibility_timeout() -> None:
    """A message goes to another worker once unacknowledged for the visibility timeout:
    below a task's longest attempt, each such attempt would get a second message."""
    longest = max(task.timeout_seconds for task in TASKS.values())
    needed = longest + CANCEL_GRACE_SECONDS + settings.job_lease_seconds
    if settings.celery_visibility_timeout_seconds < needed:
        raise ValueError(
            f"CELERY_VISIBILITY_TIMEOUT_SECONDS must be at least {needed:g}: the longest "
            "task's timeout, the cancel grace and JOB_LEASE_SECONDS"
        )


_check_the_visibility_timeout()


@signals.setup_logging.connect
def _log_as_the_service_does(**_: Any) -> None:
    """Connected, so that Celery leaves logging as configured above."""


@signals.celeryd_init.connect
def _no_banner_in_json_logs(instance: Any, **_: Any) -> None:
    # Celery's start-up banner is plain text: JSON logs stay a JSON object per line.
    if settings.log_format == "json":
        instance.quiet = True


@signals.worker_process_init.connect
def _start_jobs(**_: Any) -> None:
    global _jobs
    if settings.metrics_port:
        port = metrics.serve(settings.metrics_host, settings.metrics_port)
        logger.info("serving metrics on http://%s:%d/metrics", settings.metrics_host, port)
    _jobs = JobLoop(settings)
    _jobs.start()
    # Celery's warm stop waits for running tasks without a limit: the main process
    # passes its SIGTERM on as this signal (_pass_the_stop_on), and the running job gets
    # the grace. Not SIGTERM: Celery's pool has its children exit on that at once.
    signal.signal(STOP_SIGNAL, _stop_running)
    logger.info("process %d runs jobs", os.getpid())


def _stop_running(signum: int, frame: FrameType | None) -> None:
    if _jobs is not None:
        _jobs.stop_running(settings.job_shutdown_grace_seconds)


@signals.worker_process_shutdown.connect
def _stop_jobs(**_: Any) -> None:
    global _jobs
    if _jobs is not None:
        _jobs.stop(settings.job_shutdown_grace_seconds)
        _jobs = None


@signals.worker_shutting_down.connect
def _pass_the_stop_on(how: str, **_: Any) -> None:
    """In the main process, at a stop. A warm stop (SIGTERM) gives each child's running
    job the grace; every stop is bounded, should Redis not answer."""
    if how == "Warm":
        for child in active_children():
            if child.pid is not None:
                os.kill(child.pid, STOP_SIGNAL)
    bound = settings.job_shutdown_grace_seconds + STOP_SECONDS
    threading.Thread(target=exit_after, args=(bound,), daemon=True).start()


class AttemptFailed(Exception):
    """The attempt failed: Celery shows the task failed, with this error. A job retried
    is sent to Celery again when its next attempt is due."""


# AttemptFailed is expected: the runner logged the failure (with its traceback), and
# Celery logs only a line of its own.
@app.task(name=RUN_JOB, throws=(AttemptFailed,))
def run_job(job_id: str) -> Any:
    """Every Celery task of this service: one attempt of the job `job_id`; its result,
    for Celery's events."""
    if _jobs is None:
        raise RuntimeError(
            f"this service's jobs run in `celery -A {__name__} worker`, on its prefork pool"
        )
    try:
        ended = _jobs.run(uuid.UUID(job_id))
    except concurrent.futures.CancelledError:
        raise Retry("stopped: the worker stopped; the job is queued again") from None
    if ended is None:
        if _jobs.stopping:
            raise Reject("the worker is stopping", requeue=True)  # for another worker
        # A second message of a job that ran or runs elsewhere, or one this process
        # cannot claim now: nothing to show. A job still queued is sent again by a
        # poller once its message is gone (jobs/backend.py).
        logger.info("job %s not run: the job table did not give it to this process", job_id)
        raise Ignore()
    if ended.status == "retried":
        raise Retry(f"{ended.error} (the job table retries it)")
    if ended.status != "succeeded":
        raise AttemptFailed(ended.error)
    return ended.result
