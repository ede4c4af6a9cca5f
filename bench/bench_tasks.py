"""The task the end-to-end case runs: nothing, so what is timed is the job machinery."""

from job_service.jobs.registry import JobContext, task


@task(max_attempts=1)  # type: ignore[untyped-decorator]  # typed in the baked project
async def noop(ctx: JobContext) -> None:
    return None
