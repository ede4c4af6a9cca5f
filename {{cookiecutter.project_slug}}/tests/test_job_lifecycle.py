"""The job lifecycle as a state machine, against the real database: Hypothesis plays
random sequences of submit, claim (run), succeed, fail, time out, cancel, retry, an
executor's heartbeat, an executor killed, and recovery, through the same functions the
runner, the API and the pollers call, and checks after every step that

- every job has one status, and its fields agree with it;
- the row its task works on (here an email) agrees with it once it has ended;
- attempts never exceed their bounds;
- no two attempts of one job run at once;
- an outcome is recorded exactly when its attempt still holds the job.
"""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlmodel import col, delete, select, update

from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.jobs import executor_writes as writes
from {{ cookiecutter.project_slug }}.jobs import moves
from {{ cookiecutter.project_slug }}.jobs.recovery import MAX_LOST_ATTEMPTS, recover_lost_jobs
from {{ cookiecutter.project_slug }}.jobs.runner import AttemptTimedOut, allowed_attempts
from {{ cookiecutter.project_slug }}.models import (
    Email,
    EmailStatus,
    Executor,
    Job,
    JobStatus,
    utcnow,
)
from {{ cookiecutter.project_slug }}.tasks.emails import send_email

LEASE_SECONDS = 30.0
TASKS = [send_email.name]
# What the email says once its job has ended (or "sent", written by the task itself).
EMAIL_AFTER = {
    JobStatus.QUEUED: EmailStatus.QUEUED,
    JobStatus.RUNNING: EmailStatus.QUEUED,
    JobStatus.FAILED: EmailStatus.FAILED,
    JobStatus.CANCELLED: EmailStatus.CANCELLED,
}


@dataclass
class ExecutorModel:
    id: uuid.UUID
    alive: bool = True
    # The jobs whose attempt runs in this process now.
    running: set[uuid.UUID] = field(default_factory=set)


class JobLifecycle(RuleBasedStateMachine):
    database_url: str  # the test's database, set on a subclass

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(self.database_url)
        self.sessionmaker = create_sessionmaker(self.engine)
        self.executors: list[ExecutorModel] = []
        self.emails: dict[uuid.UUID, uuid.UUID] = {}  # job id -> its email's id

    jobs = Bundle("jobs")

    def run(self, work: Any) -> Any:
        async def in_session() -> Any:
            async with self.sessionmaker() as session:
                return await work(session)

        return self.loop.run_until_complete(in_session())

    def teardown(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()

    @initialize()
    def two_executors_and_empty_tables(self) -> None:
        async def empty(session: Any) -> None:
            for table in (Job, Executor, Email):
                await session.exec(delete(table))
            await session.commit()

        self.run(empty)
        self.start_executor()
        self.start_executor()

    def job(self, job_id: uuid.UUID) -> Job:
        async def get(session: Any) -> Job:
            job: Job = await session.get_one(Job, job_id)
            return job

        job: Job = self.run(get)
        return job

    @rule(target=jobs, max_attempts=st.integers(1, 3))
    def submit(self, max_attempts: int) -> uuid.UUID:
        email = Email(to="ada@example.com", subject="Hello", body="Hi")
        job = send_email.new_job(email_id=str(email.id), max_attempts=max_attempts)
        email.job_id = job.id
        self.emails[job.id] = email.id

        async def add(session: Any) -> None:
            session.add_all([email, job])
            await session.commit()

        self.run(add)
        return job.id

    @rule()
    def start_executor(self) -> None:
        executor = ExecutorModel(uuid.uuid4())

        async def join(session: Any) -> None:
            row = Executor(id=executor.id, host="test", pid=1, backend="test", tasks=TASKS)
            await writes.register_executor(session, row)

        self.run(join)
        self.executors.append(executor)

    def alive(self, data: st.DataObject) -> ExecutorModel:
        return data.draw(st.sampled_from([e for e in self.executors if e.alive]))

    def has_alive(self) -> bool:
        return any(e.alive for e in self.executors)

    def has_running(self) -> bool:
        return any(e.alive and e.running for e in self.executors)

    @precondition(has_alive)
    @rule(job_id=jobs, data=st.data())
    def claim(self, job_id: uuid.UUID, data: st.DataObject) -> None:
        executor = self.alive(data)
        if job_id in executor.running:
            return  # the runner starts no attempt beside one of its own

        async def claim(session: Any) -> list[Job]:
            claimed: list[Job] = await writes.claim(
                session, [job_id], executor.id, LEASE_SECONDS / 2, TASKS
            )
            return claimed

        if self.run(claim):
            executor.running.add(job_id)

    def record(self, executor: ExecutorModel, job_id: uuid.UUID, write: Any) -> None:
        """Write an outcome of the attempt this executor runs; it is recorded exactly
        when the table says the executor still holds the job."""
        before = self.job(job_id)
        holds = before.status == JobStatus.RUNNING and before.executor_id == executor.id
        executor.running.discard(job_id)
        assert self.run(write) == holds

    @precondition(has_running)
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        executor = data.draw(st.sampled_from([e for e in self.executors if e.alive and e.running]))
        job_id = data.draw(st.sampled_from(sorted(executor.running)))

        async def succeed(session: Any) -> bool:
            # The task writes its row, then its result is recorded.
            email = await session.get_one(Email, self.emails[job_id])
            email.status = EmailStatus.SENT
            await session.commit()
            (recorded,) = await writes.record_successes(
                session, executor.id, [writes.Success(job_id, {"status": "sent"})]
            )
            return recorded

        self.record(executor, job_id, succeed)

    @precondition(has_running)
    @rule(data=st.data(), permanent=st.booleans(), timed_out=st.booleans())
    def fail(self, data: st.DataObject, permanent: bool, timed_out: bool) -> None:
        executor = data.draw(st.sampled_from([e for e in self.executors if e.alive and e.running]))
        job_id = data.draw(st.sampled_from(sorted(executor.running)))
        job = self.job(job_id)
        last = permanent or job.attempts >= allowed_attempts(job)
        error = AttemptTimedOut("timed out") if timed_out else RuntimeError("no")

        async def fail(session: Any) -> bool:
            recorded: bool = await writes.record_failure(
                session, job_id, executor.id, error, None if last else 0.0
            )
            return recorded

        self.record(executor, job_id, fail)

    @rule(job_id=jobs)
    def cancel(self, job_id: uuid.UUID) -> None:
        self.run(lambda session: moves.cancel(session, job_id))

    @rule(job_id=jobs)
    def retry(self, job_id: uuid.UUID) -> None:
        self.run(lambda session: moves.retry(session, job_id))

    @rule(job_id=jobs)
    def cancel_then_retry_at_once(self, job_id: uuid.UUID) -> None:
        self.cancel(job_id)
        self.retry(job_id)

    @precondition(has_alive)
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        """The executor beats; the attempts of jobs the table no longer gives it are
        stopped (and end)."""
        executor = self.alive(data)

        async def beat(session: Any) -> set[uuid.UUID] | None:
            held: set[uuid.UUID] | None = await writes.heartbeat(
                session, executor.id, executor.running
            )
            return held

        held = self.run(beat)
        assert held is not None, "a live executor's row stays"
        executor.running &= held

    @precondition(has_alive)
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        """The process dies: its attempts end with it, and its heartbeat stops."""
        executor = self.alive(data)
        executor.alive, executor.running = False, set()

        async def silence(session: Any) -> None:
            long_ago = utcnow() - timedelta(seconds=LEASE_SECONDS * 2)
            await session.exec(
                update(Executor)
                .where(col(Executor.id) == executor.id)
                .values(heartbeat_at=long_ago)
            )
            await session.commit()

        self.run(silence)

    @rule()
    def recover(self) -> None:
        self.run(lambda session: recover_lost_jobs(session, LEASE_SECONDS))

    @invariant()
    def rows_agree(self) -> None:
        async def rows(session: Any) -> list[tuple[Job, Email]]:
            joined = await session.exec(select(Job, Email).where(col(Email.job_id) == Job.id))
            return list(joined.all())

        for job, email in self.run(rows):
            assert job.status in JobStatus
            assert (job.status == JobStatus.RUNNING) <= (job.executor_id is not None)
            assert (job.finished_at is not None) == (
                job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
            )
            assert job.attempts - job.lost_attempts <= job.max_attempts
            assert job.lost_attempts <= MAX_LOST_ATTEMPTS
            if job.status == JobStatus.SUCCEEDED:
                assert email.status == EmailStatus.SENT
            else:
                assert email.status in (EmailStatus.SENT, EMAIL_AFTER[job.status]), (
                    job.status,
                    email.status,
                )

    @invariant()
    def one_attempt_at_a_time(self) -> None:
        running = [job_id for e in self.executors if e.alive for job_id in e.running]
        assert len(running) == len(set(running)), "two attempts of one job run at once"


def test_the_job_lifecycle_keeps_its_invariants(migrated_database_url: str) -> None:
    class OnTheTestDatabase(JobLifecycle):
        database_url = migrated_database_url

    run_state_machine_as_test(
        OnTheTestDatabase,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
