"""The baked Celery app with the benchmark's task registered:
`celery -A celery_worker worker`, with the baked project and bench/ importable."""

import bench_tasks  # noqa: F401  # registers noop
from job_service.worker import app

__all__ = ["app"]
