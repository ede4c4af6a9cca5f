"""The service with the test tasks registered: `uvicorn tests.app:app`."""

import os

from {{ cookiecutter.project_slug }}.main import app
from tests import tasks  # registers the tasks the tests run

if os.environ.get("TEST_NEXT_RELEASE"):
    tasks.register_the_next_release()

__all__ = ["app"]
