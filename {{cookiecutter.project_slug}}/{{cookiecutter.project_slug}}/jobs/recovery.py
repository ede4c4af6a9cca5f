"""Taking back the jobs of executors that went unheard (lost), and giving up the jobs of
tasks no executor knows: any process's poller may run this, and two at once are safe
(each UPDATE states the condition it changes)."""

import uuid

from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }} import clock
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.registry import follow
from {{ cookiecutter.project_slug }}.models import Executor, Job, JobStatus

# A job fails once its process has died during this many of its attempts: it is likely
# what kills it. Until then a lost attempt is not counted among its max_attempts, so the
# jobs that were only beside it when their process died lose nothing.
MAX_LOST_ATTEMPTS = 3
GIVEN_UP = (
    f"the process running the job stopped during {MAX_LOST_ATTEMPTS} of its attempts: it "
    "may be what stops it (memory, a crash)"
)


async def recover_lost_jobs(
    session: AsyncSession, lease_seconds: float
) -> tuple[list[str], list[str]]:
    """Queue again the running jobs whose executor has not been heard from within the
    lease (it crashed, was killed or cut off), their attempt counted as lost, not against
    max_attempts; fail those lost MAX_LOST_ATTEMPTS times, and their task's rows;
    forget those executors.
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
            error_message=GIVEN_UP,
            finished_at=clock.now(),
        )
        .returning(col(Job.id), col(Job.name))
    )
    failed_jobs = [(job_id, name) for job_id, name in failed]
    await follow(session, failed_jobs, JobStatus.FAILED, f"ExecutorLost: {GIVEN_UP}")
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
    return requeued_names, [name for _, name in failed_jobs]


async def fail_unknown_tasks(
    session: AsyncSession, lease_seconds: float, after_seconds: float
) -> list[tuple[uuid.UUID, str]]:
    """Fail the queued jobs due for over `after_seconds` whose task no executor heard
    from within the lease knows, and their task's rows; the jobs failed, (id, name).
    None is failed while no executor is heard from: then nothing can be judged."""
    known = await reads.known_tasks(session, lease_seconds)
    if known is None:
        return []
    why = (
        f"no running executor knew the task within {after_seconds:g} s of the job being "
        "due (JOB_UNKNOWN_TASK_SECONDS): a task removed or renamed, or a deploy that "
        "did not finish"
    )
    failed = await session.exec(
        update(Job)
        .where(
            col(Job.status) == JobStatus.QUEUED,
            col(Job.run_after) <= clock.now(-after_seconds),
            col(Job.name).not_in(known),
        )
        .values(
            status=JobStatus.FAILED,
            error_type="UnknownTask",
            error_message=why,
            finished_at=clock.now(),
        )
        .returning(col(Job.id), col(Job.name))
    )
    jobs = [(job_id, name) for job_id, name in failed]
    await follow(session, jobs, JobStatus.FAILED, f"UnknownTask: {why}")
    await session.commit()
    return jobs
