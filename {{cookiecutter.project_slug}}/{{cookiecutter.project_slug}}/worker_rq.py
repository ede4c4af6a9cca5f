r"""RQ's own worker runs the jobs:

    rq worker --worker-class {{ cookiecutter.project_slug }}.worker.Worker --serializer json \
        --url "$REDIS_URL" "$RQ_QUEUE"

or `python -m {{ cookiecutter.project_slug }}.worker`, which fills those in from the
settings (main()).
`Worker` is RQ's `SimpleWorker` (each job runs in the worker process, no fork) with one
event loop and one database engine for the process's life, in a thread: there the
shared runner claims, runs and records each job RQ hands it, keeps the executor's
heartbeat, and the poller sends due, delayed and lost jobs to Redis. RQ's registries,
`rq info` and rq-dashboard see each job as RQ's own.
"""

import concurrent.futures
import contextlib
import logging
import sys
import threading
import uuid
from types import FrameType
from typing import Any

from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.cli.cli import main as rq_cli
from rq.job import Job as RQJob

from {{ cookiecutter.project_slug }} import (
    metrics,
    tasks,  # noqa: F401  # registers every task
)
from {{ cookiecutter.project_slug }}.jobs.loop import STOP_SECONDS, JobLoop, exit_after
from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import get_settings

logger = logging.getLogger(__name__)

_jobs: JobLoop | None = None


class Worker(SimpleWorker):
    _stopping = False

    def work(self, *args: Any, **kwargs: Any) -> bool:
        global _jobs
        self._settings = settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        # RQ's command line gave its loggers handlers of their own: they log as ours do.
        for name in ("rq.worker", "rq.job"):
            logging.getLogger(name).handlers.clear()
        if settings.metrics_port:
            port = metrics.serve(settings.metrics_host, settings.metrics_port)
            logger.info("serving metrics on http://%s:%d/metrics", settings.metrics_host, port)
        _jobs = JobLoop(settings)
        _jobs.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            _jobs.stop(settings.job_shutdown_grace_seconds)
            _jobs = None

    def unsubscribe(self) -> None:
        # RQ unsubscribes, then stops its listener thread, which by then may be in a
        # new 60 s read that redis-py's stop() waits out: stopped first here, so the
        # reply to the unsubscribe ends that read, and the wait is bounded.
        if self.pubsub_thread:
            self.pubsub_thread.stop(timeout=0)
            with contextlib.suppress(RedisError):
                self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()

    def handle_exception(self, job: RQJob, *exc_info: Any) -> None:
        if not isinstance(exc_info[1], AttemptFailed | NotRun):
            super().handle_exception(job, *exc_info)
            return
        # Logged already, by the runner or run_job (with a traceback where it helps):
        # RQ's own line would repeat it. Exception handlers (Sentry's) still run.
        for handler in self._exc_handlers:
            if handler(job, *exc_info) is False:
                break

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # RQ's warm shutdown waits for the running job without a limit: it gets the
        # grace, then is stopped and queued again.
        if _jobs is not None and not self._stopping:
            self._stopping = True
            grace = self._settings.job_shutdown_grace_seconds
            _jobs.stop_running(grace)
            threading.Thread(target=exit_after, args=(grace + STOP_SECONDS,), daemon=True).start()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # untyped in RQ


class AttemptFailed(Exception):
    """The attempt failed: RQ files the job as failed, with this error. A job retried is
    sent to RQ again when its next attempt is due."""


class NotRun(Exception):
    """The job table did not give the job to this worker: RQ files it as failed, with why."""


def run_job(job_id: str) -> Any:
    """The function of every RQ job of this service: one attempt of the job `job_id`;
    its result, for RQ's record."""
    if _jobs is None:
        raise RuntimeError(
            f"this service's jobs run in `rq worker --worker-class {__name__}.Worker`"
        )
    try:
        ended = _jobs.run(uuid.UUID(job_id))
    except concurrent.futures.CancelledError:
        raise AttemptFailed("stopped: the worker stopped; the job is queued again") from None
    if ended is None:
        # `rq requeue` of a job that failed, for one: only the table's retry runs it again.
        logger.warning("job %s not run: the job table did not give it to this worker", job_id)
        raise NotRun(
            "not run: the job table has it cancelled, ended, not yet due or held by another "
            f"worker; to run a failed job again: python -m {__package__} jobs retry {job_id}"
        )
    if ended.status == "retried":
        raise AttemptFailed(f"{ended.error} (the job table retries it)")
    if ended.status != "succeeded":
        raise AttemptFailed(ended.error)
    return ended.result


def main() -> None:
    """`python -m {{ cookiecutter.project_slug }}.worker [worker-pool -n N] [RQ's options]`:
    RQ's own command line, `rq worker` (or `rq worker-pool`), given this service's worker
    class, JSON serializer, REDIS_URL and RQ_QUEUE; options given here win."""
    settings = get_settings()
    arguments = sys.argv[1:]
    command = "worker"
    if arguments[:1] in (["worker"], ["worker-pool"]):
        command, arguments = arguments[0], arguments[1:]
    rq_cli(
        [
            command,
            "--worker-class",
            # Not __name__: run as `python -m`, this module is __main__, and run_job would
            # find another copy of it, whose worker never started.
            "{{ cookiecutter.project_slug }}.worker.Worker",
            "--serializer",
            "json",
            "--url",
            settings.redis_url,
            *arguments,
            settings.rq_queue,
        ]
    )


if __name__ == "__main__":
    main()
