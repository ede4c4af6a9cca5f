"""A baked service on several hosts, as deployed: network namespaces on one machine for a
database host (PostgreSQL), a Redis host (rq, celery), two web hosts and, for rq and
celery, two worker hosts, each server bound to its own host's address. One executor host
runs a minute ahead (libfaketime), and one is cut off mid-run.

Jobs submitted to both web hosts all succeed, on more than one executor; the jobs of the
host cut off run again elsewhere once its heartbeat is older than the lease; its late writes,
when its link comes back, are rejected; every job ends with one recorded outcome; and the
job counts scraped from every host add up to the jobs that ran.
"""

import contextlib
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest

from tests.conftest import PROJECT_TEMPLATE, Combination, bake, load_module, require_binary, run
from tests.netns import Host, Network

CLIENT = Path(__file__).with_name("net_client.py")
PORT = 8000
METRICS_PORT = 9101
EMAILS = 100
LEASE_SECONDS = 2
GRACE_SECONDS = 2
# What a stop may take past its grace with every server unreachable: the baked README's
# bound (11 s at most), and a process's exit.
STOP_PAST_GRACE_SECONDS = 13
ASK_TIMEOUT_SECONDS = 120


@dataclass
class Deployment:
    network: Network
    project: Path
    logs: Path
    client: Host
    env: dict[str, str]
    web: list[Host] = field(default_factory=list)
    # The database's and Redis's hosts.
    servers: list[Host] = field(default_factory=list)
    # Every process of the service: web and worker.
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Each process that runs jobs: its host, process and log.
    executors: list[tuple[Host, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    # The client host's process, started by the first ask().
    asker: subprocess.Popen[bytes] | None = None

    @property
    def web_urls(self) -> list[str]:
        return [f"http://{host.address}:{PORT}" for host in self.web]

    def ask(self, *args: str) -> Any:
        """The answer of the client host's process (net_client.py) to a command."""
        if self.asker is None:
            python = str(self.project / ".venv" / "bin" / "python")
            command = ["ip", "netns", "exec", self.client.namespace, python, str(CLIENT)]
            env = {**os.environ, **self.env}
            with (self.logs / "client.log").open("ab") as log:
                self.asker = subprocess.Popen(
                    command, cwd=self.project, env=env, stdin=PIPE, stdout=PIPE, stderr=log
                )
        assert self.asker.stdin is not None
        assert self.asker.stdout is not None
        self.asker.stdin.write(json.dumps(args).encode() + b"\n")
        self.asker.stdin.flush()
        answered, _, _ = select.select([self.asker.stdout], [], [], ASK_TIMEOUT_SECONDS)
        assert answered, f"no answer to {args} in {ASK_TIMEOUT_SECONDS} s:\n{self.client_log()}"
        line = self.asker.stdout.readline()
        assert line, f"the client host's process ended:\n{self.client_log()}"
        return json.loads(line)

    def client_log(self) -> str:
        return (self.logs / "client.log").read_text()[-4000:]

    def stop_asking(self) -> None:
        if self.asker is not None:
            assert self.asker.stdin is not None
            self.asker.stdin.close()  # its loop ends with its input
            try:
                self.asker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.asker.kill()
                self.asker.wait()

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return [job for job in self.ask("jobs") if job["name"] == name]

    def output(self) -> str:
        return "\n".join(
            f"== {log.name}\n{log.read_text()[-4000:]}" for _, _, log in self.executors
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str, d: Deployment) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s\n{d.output()}")
        time.sleep(0.2)
    return time.monotonic() - started


def faketime_library() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("libfaketime is not installed (Debian: faketime); .ci/run must install it")
        pytest.skip("libfaketime is not installed (Debian: faketime)")
    return str(found[0])


@contextmanager
def postgres_data() -> Iterator[tuple[Path, Path, list[str]]]:
    """A fresh data directory that trusts the hosts' subnet: (server bindir, data, run as)."""
    pg_server = load_module(PROJECT_TEMPLATE / "tests" / "pg_server.py")
    bindir = pg_server.find_bindir()
    if bindir is None:
        require_binary("postgres")
    require_binary("setpriv")
    user = pwd.getpwnam("postgres")
    # Not under pytest's folder, which only root may enter.
    data = Path(tempfile.mkdtemp(prefix="pg-hosts-"))
    os.chown(data, user.pw_uid, user.pw_gid)
    run_as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run([*run_as, *initdb, "--no-sync"], check=True, capture_output=True)
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.201.0.0/24 trust\n")
        yield bindir, data, run_as
    finally:
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def deployed(combination: Combination, tmp_path: Path) -> Iterator[Deployment]:
    # rq and celery: their workers run the jobs, on hosts of their own, fed through Redis.
    workers = combination.job_backend in ("rq", "celery")
    if workers:
        require_binary("redis-server")
    skewed = {
        "LD_PRELOAD": faketime_library(),
        "FAKETIME": "+60s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    project = bake(tmp_path, **combination.answers())
    run(["make", "install"], cwd=project)
    python = str(project / ".venv" / "bin" / "python")
    logs = tmp_path / "logs"
    logs.mkdir()
    with Network("mh") as network, postgres_data() as (bindir, data, run_as):
        db = network.host("db")
        client = network.host("client")
        options = ["-h", db.address, "-p", "5432", "-k", str(data), "-c", "fsync=off"]
        postgres = [*run_as, str(bindir / "postgres"), "-D", str(data), *options]
        network.start(db, postgres, logs / "postgres.log")
        env = {
            "DATABASE_URL": f"postgresql+asyncpg://postgres@{db.address}:5432/postgres",
            "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "JOB_POLL_SECONDS": "0.1",
            "JOB_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
            # A cut-off host's statements end after this, instead of hanging.
            "DATABASE_TIMEOUT_SECONDS": "3",
            "CLEANUP_SCHEDULE": "",
            "TEST_RUNS_LOG": str(tmp_path / "runs.log"),
            # Its web hosts listen beyond loopback: the API asks for a key (the client
            # host's process sends it).
            "API_KEYS": "hosts-key-5c2e",
        }
        d = Deployment(network, project, logs, client, env, servers=[db])
        ready = [str(bindir / "pg_isready"), "-q", "-h", db.address, "-p", "5432"]
        wait_until(lambda: network_ok(network, db, ready), 30, "PostgreSQL up", d)
        network.run(
            client,
            [
                "env",
                *(f"{k}={v}" for k, v in env.items()),
                str(project / ".venv" / "bin" / "alembic"),
                "upgrade",
                "head",
            ],
            cwd=project,
        )
        if workers:
            redis = network.host("redis")
            server = ["redis-server", "--bind", redis.address, "--port", "6379"]
            # Not protected mode: the other hosts are its clients, and only they reach it.
            server += ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
            network.start(redis, server, logs / "redis.log")
            d.servers.append(redis)
            env |= {"REDIS_URL": f"redis://{redis.address}:6379/0"}
            env[f"{combination.job_backend.upper()}_QUEUE"] = "hosts"
            ping = ["redis-cli", "-h", redis.address, "ping"]
            wait_until(lambda: network_ok(network, redis, ping), 30, "Redis up", d)
        for n in (1, 2):
            web = network.host(f"web{n}")
            d.web.append(web)
            own = {**env, "METRICS_DIR": str(tmp_path / f"metrics-{web.name}")}
            own["STORAGE_DIR"] = str(tmp_path / f"storage-{web.name}")
            if not workers and n == 2:
                own |= skewed
            uvicorn = [python, "-m", "uvicorn", "tests.app:app", "--host", web.address]
            log = logs / f"{web.name}.log"
            process = network.start(web, [*uvicorn, "--port", str(PORT)], log, project, own)
            d.processes.append(process)
            d.metrics.append(f"http://{web.address}:{PORT}")
            if not workers:
                d.executors.append((web, process, log))
        if workers:
            for n in (1, 2):
                host = network.host(f"worker{n}")
                own = {**env, "METRICS_HOST": host.address, "METRICS_PORT": str(METRICS_PORT)}
                if n == 2:
                    own |= skewed
                log = logs / f"{host.name}.log"
                # The service's worker command, with the test tasks.
                if combination.job_backend == "rq":
                    worker = [python, "-m", "job_service.worker", "-w", "tests.worker.Worker"]
                else:
                    worker = [python, "-m", "celery", "-A", "tests.worker", "worker", "-c", "1"]
                process = network.start(host, worker, log, project, own)
                d.processes.append(process)
                d.executors.append((host, process, log))
                d.metrics.append(f"http://{host.address}:{METRICS_PORT}")
        try:
            wait_until(lambda: d.ask("up", *d.web_urls), 60, "web hosts up", d)
            wait_until(lambda: len(d.ask("executors")) == 2, 60, "two executors", d)
            yield d
        finally:
            d.stop_asking()


def family(pid: int) -> set[int]:
    """The process and its descendants."""
    found, todo = set[int](), [pid]
    while todo:
        found.add(parent := todo.pop())
        with contextlib.suppress(OSError):
            todo += map(int, Path(f"/proc/{parent}/task/{parent}/children").read_text().split())
    return found


def network_ok(network: Network, host: Host, command: list[str]) -> bool:
    try:
        network.run(host, command, timeout=10)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize(
    "combination",
    [
        Combination("create_task", "postgresql"),
        Combination("rq", "postgresql"),
        Combination("celery", "postgresql"),
    ],
    ids=lambda c: c.id,
)
def test_jobs_keep_their_promises_across_hosts_a_cut_link_and_a_skewed_clock(
    combination: Combination, tmp_path: Path
) -> None:
    # An RQ worker, and a Celery worker of one child, run one job at a time: fewer jobs,
    # for the one worker left to run them all within the wait below.
    work_jobs = 8 if combination.job_backend in ("rq", "celery") else 20
    work_seconds = 4.0
    with deployed(combination, tmp_path) as d:
        # Both web hosts take emails; both executors send them. On a busy machine one
        # executor's share of a round can be nothing: up to three rounds.
        emails = 0
        for _ in range(3):
            sent = d.ask("emails", str(EMAILS), *d.web_urls)
            assert Counter(sent["statuses"]) == {202: EMAILS}
            emails += EMAILS

            def emails_done(count: int = emails) -> bool:
                jobs = d.jobs("send_email")
                return len(jobs) == count and all(job["status"] == "succeeded" for job in jobs)

            wait_until(emails_done, 60, "every email sent", d)
            used = Counter(job["executor_id"] for job in d.jobs("send_email"))
            if len(used) == 2:
                break
        assert len(used) == 2, f"emails ran on {dict(used)}"

        # Mid-run, the first executor host's link goes down.
        cut_host, cut_process, cut_log = d.executors[0]
        # A Celery worker's jobs run in its child process: the executor is that child.
        cut_pids = family(cut_process.pid)
        [cut_id] = [e["id"] for e in d.ask("executors") if e["pid"] in cut_pids]
        added = d.ask("add-work", str(work_jobs), str(work_seconds), cut_id)
        held = added["held"]
        assert held, f"no job running on the host to cut: {added['seen']}\n{d.output()}"
        d.network.cut(cut_host)
        cut_at = time.monotonic()

        def work_done() -> bool:
            return all(job["status"] == "succeeded" for job in d.jobs("work"))

        wait_until(work_done, 60, "every job done while a host is cut off", d)
        moved_after = time.monotonic() - cut_at
        moved = {job["id"]: job for job in d.jobs("work") if job["id"] in held}
        assert all(job["executor_id"] != cut_id for job in moved.values()), moved
        # Their first attempts were lost with the host: counted apart, not against them.
        assert all((job["attempts"], job["lost_attempts"]) == (2, 1) for job in moved.values())
        # Not before the lease has run out: a live executor keeps its jobs.
        assert moved_after >= LEASE_SECONDS

        d.network.restore(cut_host)

        def rejected() -> int:
            return cut_log.read_text().count("not recorded")

        wait_until(lambda: rejected() >= 1, 30, "the cut host's late write rejected", d)
        time.sleep(1)
        jobs = d.jobs("work")
        assert all(job["status"] == "succeeded" for job in jobs)

        # Every run is noted with its process: the jobs the cut host started (those held,
        # and any it took between that look and the cut) ran twice, the others once.
        lines = (tmp_path / "runs.log").read_text().splitlines()
        noted = [line.split() for line in lines if line.startswith("run ")]
        runs = Counter(job_id for _, job_id, _, _ in noted)
        on_cut = {job_id for _, job_id, _, pid in noted if int(pid) in cut_pids}
        assert set(held) <= on_cut, (held, on_cut)
        assert {job_id: runs[job_id] for job_id in on_cut} == dict.fromkeys(on_cut, 2)
        assert all(runs[job["id"]] == 1 for job in jobs if job["id"] not in on_cut)

        # Counted where they ran, once: the scrapes of every host add up to the jobs.
        expected = emails + work_jobs
        totals: dict[str, float] = {}

        def counted() -> bool:
            nonlocal totals
            totals = d.ask("succeeded", *d.metrics)
            return sum(totals.values()) >= expected

        wait_until(counted, 20, "metrics of every host", d)
        assert sum(totals.values()) == expected, totals

        stopped_after = stop_with_the_servers_cut(d)
    print(
        f"{combination.id}: {emails} emails on {len(used)} executors {sorted(used.values())}; "
        f"{len(held)} jobs of the cut host ran elsewhere {moved_after:.1f} s after the cut; "
        f"{rejected()} late writes rejected; metrics {sorted(totals.values())}; "
        f"stopped with the servers cut after {stopped_after} s"
    )


def stop_with_the_servers_cut(d: Deployment) -> list[float]:
    """SIGTERM to every process while jobs run and the servers' hosts drop every packet
    (no reset, no refusal: a client without a timeout would wait for ever); how long each
    took to end, in seconds."""
    _, executor, _ = d.executors[1]
    pids = family(executor.pid)
    [executor_id] = [e["id"] for e in d.ask("executors") if e["pid"] in pids]
    added = d.ask("add-work", "6", "600", executor_id)
    # Running on either executor: both are stopped.
    running = [where for where in added["seen"] if where.startswith("running")]
    assert running, f"no job running: {added['seen']}\n{d.output()}"
    d.stop_asking()
    for server in d.servers:
        d.network.cut(server)
    for process in d.processes:
        os.killpg(process.pid, signal.SIGTERM)
    started = time.monotonic()
    ended: dict[int, float] = {}
    while len(ended) < len(d.processes) and time.monotonic() - started < 60:
        for process in d.processes:
            if process.pid not in ended and process.poll() is not None:
                ended[process.pid] = round(time.monotonic() - started, 1)
        time.sleep(0.1)
    logs = "\n".join(
        f"== {log.name}\n{log.read_text()[-3000:]}" for log in sorted(d.logs.glob("w*.log"))
    )
    bound = GRACE_SECONDS + STOP_PAST_GRACE_SECONDS
    took = [ended.get(process.pid, float("inf")) for process in d.processes]
    assert max(took) <= bound, f"stopped after {took} s, not within {bound} s:\n{logs}"
    return took
