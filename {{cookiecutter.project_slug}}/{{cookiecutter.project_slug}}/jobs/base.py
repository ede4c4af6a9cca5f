"""What a job backend is. This project's is `jobs/backend.py`, built as
`Backend(settings, sessionmaker)`; the rest of the job layer knows it by this protocol."""

{% if cookiecutter.job_backend not in ("rq", "celery") -%}
import asyncio
{% endif -%}
import uuid
from collections.abc import Collection, Sequence
from typing import Protocol
{%- if cookiecutter.job_backend not in ("rq", "celery") %}

from {{ cookiecutter.project_slug }}.models import Job

# A job started on insert learns from it whether its INSERT landed: the job, or None.
JobInserted = asyncio.Future[Job | None]
{%- endif %}


class JobBackend(Protocol):
    name: str

    async def start(self) -> None:
        """Start taking jobs."""

    def check_accepting(self) -> None:
        """Raise JobsUnavailable when no new job is taken now."""

    def in_hand(self) -> Collection[uuid.UUID]:
        """Jobs this executor already holds, waiting or running."""

    def free_slots(self) -> int:
        """How many more jobs this executor will take now."""

    async def dispatch(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Start these due jobs, or queue them to be started."""
{%- if cookiecutter.job_backend not in ("rq", "celery") %}

    async def start_on_insert(self, job: Job) -> JobInserted | None:
        """Start the new, due `job` here in the INSERT that creates it, or return None to
        leave it queued for dispatch()."""
{%- endif %}

    def cancel(self, job_id: uuid.UUID) -> None:
        """Stop the job if it runs here (it was cancelled)."""

    async def stop(self, grace_seconds: float) -> None:
        """Take no new jobs; give running ones the grace, then queue them again."""
