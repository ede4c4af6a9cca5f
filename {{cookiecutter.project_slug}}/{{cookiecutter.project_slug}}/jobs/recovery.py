"""Taking back the jobs of executors that went unheard: any process's poller may run
this, and two at once are safe (each UPDATE states the condition it changes)."""

from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus


async def recover_stalled_jobs(
    session: AsyncSession, lease_seconds: float
) -> tuple[list[str], list[str]]:
    """Requeue running jobs whose executor has not been heard from within the lease (it
    crashed, was killed or cut off), or fail them when that was their last attempt, and
    forget those executors. Returns the names of the jobs requeued and of those failed."""
    alive = select(Executor.id).where(col(Executor.heartbeat_at) >= clock.now(-lease_seconds))
    stalled = (col(Job.status) == JobStatus.RUNNING) & col(Job.executor_id).not_in(alive)
    # Each statement states its own attempts condition: a job that stalls between the
    # two (each sees newly committed rows) is then handled right by either.
    failed = await session.exec(
        update(Job)
        .where(stalled & (col(Job.attempts) >= col(Job.max_attempts)))
        .values(
            status=JobStatus.FAILED,
            error_type="ExecutorLost",
            error_message="the process running the job stopped during its last attempt",
            finished_at=clock.now(),
        )
        .returning(col(Job.name))
    )
    failed_names = list(failed.scalars())
    requeued = await session.exec(
        update(Job)
        .where(stalled & (col(Job.attempts) < col(Job.max_attempts)))
        .values(status=JobStatus.QUEUED, run_after=clock.now(), executor_id=None)
        .returning(col(Job.name))
    )
    requeued_names = list(requeued.scalars())
    await session.exec(
        delete(Executor).where(col(Executor.heartbeat_at) < clock.now(-lease_seconds))
    )
    await session.commit()
    return requeued_names, failed_names
