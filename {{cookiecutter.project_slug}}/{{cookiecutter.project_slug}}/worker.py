"""The RQ worker: `python -m {{ cookiecutter.project_slug }}.worker` runs queued jobs."""

from redis import Redis
from rq import Queue, Worker

from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    redis = Redis.from_url(settings.redis_url)
    worker = Worker([Queue(settings.rq_queue, connection=redis)], connection=redis)
    # SIGTERM lets the current job finish; a second one stops it at once.
    worker.work(logging_level=settings.log_level)


if __name__ == "__main__":
    main()
