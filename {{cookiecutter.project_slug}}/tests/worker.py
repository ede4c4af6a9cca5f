"""The worker class with the test tasks registered (tests/processes.py starts it):
`python -m {{ cookiecutter.project_slug }}.worker --worker-class tests.worker.Worker`."""

import os

from {{ cookiecutter.project_slug }}.worker import Worker
from tests import tasks  # registers the tasks the tests run

if os.environ.get("TEST_NEXT_RELEASE"):
    tasks.register_the_next_release()

__all__ = ["Worker"]
