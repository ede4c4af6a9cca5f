{%- if cookiecutter.job_backend == "rq" -%}
"""The worker class with the test tasks registered (tests/processes.py starts it):
`python -m {{ cookiecutter.project_slug }}.worker --worker-class tests.worker.Worker`."""

import os

from {{ cookiecutter.project_slug }}.worker import Worker
from tests import tasks  # registers the tasks the tests run

if os.environ.get("TEST_NEXT_RELEASE"):
    tasks.register_the_next_release()

__all__ = ["Worker"]
{%- else -%}
"""The Celery app with the test tasks registered (tests/processes.py starts its worker):
`celery -A tests.worker worker`."""

import os

from {{ cookiecutter.project_slug }}.worker import app
from tests import tasks  # registers the tasks the tests run

if os.environ.get("TEST_NEXT_RELEASE"):
    tasks.register_the_next_release()

__all__ = ["app"]
{%- endif %}
