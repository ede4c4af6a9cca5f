"""Taking back the jobs of executors that went unheard (lost): any process's poller may
run this, and two at once are safe (each UPDATE states the condition it changes)."""

from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus

# A job fails once its process has died during this many of its attempts: it is likely
# what kills it. Until then a lost attempt is not counted among its max_attempts, so the
# jobs that were only beside it when their process died lose nothing.
MAX_LOST_ATTEMPTS = 3


async def recover_lost_jobs(
    session: AsyncSession, lease_seconds: float
) -> tuple[list[str], list[str]]:
    """Queue again the running jobs whose executor has not been heard from within the
    lease (it crashed, was killed or cut off), their attempt counted as lost, not against
    max_attempts; fail those lost MAX_LOST_ATTEMPTS times; forget those executors.
    Returns the names of the jobs queued again and of those failed."""
    alive = select(Executor.id).where(col(Executor.heartbeat_at) >= clock.now(-lease_seconds))
    lost = (col(Job.status) == JobStatus.RUNNING) & col(Job.executor_id).not_in(alive)
    # Each statement states its own condition: a job lost between the two (each sees
    # newly committed rows) is then handled right by either.
    last = col(Job.lost_attempts) + 1 >= MAX_LOST_ATTEMPTS
    failed = await session.exec(
        update(Job)
        .where(lost & last)
        .values(
            status=JobStatus.FAILED,
            lost_attempts=col(Job.lost_attempts) + 1,
            error_type="ExecutorLost",
            error_message=(
                f"the process running the job stopped during {MAX_LOST_ATTEMPTS} of its "
                "attempts: it may be what stops it (memory, a crash)"
            ),
            finished_at=clock.now(),
        )
        .returning(col(Job.name))
    )
    failed_names = list(failed.scalars())
    requeued = await session.exec(
        update(Job)
        .where(lost & ~last)
        .values(
            status=JobStatus.QUEUED,
            lost_attempts=col(Job.lost_attempts) + 1,
            run_after=clock.now(),
            executor_id=None,
        )
        .returning(col(Job.name))
    )
    requeued_names = list(requeued.scalars())
    await session.exec(
        delete(Executor).where(col(Executor.heartbeat_at) < clock.now(-lease_seconds))
    )
    await session.commit()
    return requeued_names, failed_names
