"""The worker with the test tasks registered: `python -m tests.worker`."""

import os

from {{ cookiecutter.project_slug }} import worker
from tests import tasks  # registers the tasks the tests run

if os.environ.get("TEST_NEXT_RELEASE"):
    tasks.register_the_next_release()

if __name__ == "__main__":
    worker.main()
