"""The baked RQ worker with the benchmark's task registered."""

import bench_tasks  # noqa: F401  # registers noop
from job_service import worker

if __name__ == "__main__":
    worker.main()
