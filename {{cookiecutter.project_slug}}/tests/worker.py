"""The worker with the test tasks registered: `python -m tests.worker`."""

from {{ cookiecutter.project_slug }} import worker
from tests import tasks  # noqa: F401  # registers the tasks the tests run

if __name__ == "__main__":
    worker.main()
