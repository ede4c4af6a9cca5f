"""The service with the test tasks registered: `uvicorn tests.app:app`."""

from {{ cookiecutter.project_slug }}.main import app
from tests import tasks  # noqa: F401  # registers the tasks the tests run

__all__ = ["app"]
