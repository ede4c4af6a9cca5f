"""`make bench`: every figure the template README claims, each next to its raw baseline
measured in the same run, as medians of several runs with min and max.

Bakes each backend's default project (SQLite) into a temporary folder and measures:

  1. bake       rendering each project, against copying the template's files
  2. enqueue    POST /api/v1/emails under a bounded load, on SQLite and PostgreSQL,
                from 1 and 4 uvicorn processes (rq's workers running the jobs), against
                a bare endpoint that inserts the same row and sends it from a task
  3. e2e        N jobs from submission until all are `succeeded`, against the raw
                library running the same body with the same writes, on SQLite and on
                PostgreSQL
  4. batch      100,000 items through POST /api/v1/batches, against a plain loop over
                the same item function
  5. upload     a 1 GiB upload: MB/s and the server's peak memory, against a bare
                endpoint that streams the body to a file
  6. idle       start-up time to the first /health 200 and resident memory, against a
                bare FastAPI app
  7. dashboard  each dashboard page over 100,000 job rows: render time and SQL
                statements, against the JSON list of the same jobs
  8. peers      the job systems users pick instead (bench/peers), N jobs each on the
                same servers, interleaved run by run, beside the e2e rows

Writes bench/results/latest.md, latest.json and latest.png. Servers (redis-server, and
PostgreSQL with fsync on) listen on 127.0.0.1 and are stopped at the end. `--smoke` runs
every case once with tiny counts, to keep the harness working; its figures mean nothing.
`--only enqueue,e2e` measures some cases and writes their figures to only.json, to
compare one change before and after.

Usage: python bench/run.py [--smoke] [--only CASES] [--output bench/results]
"""

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import report
from celery import Celery  # type: ignore[import-untyped]  # Celery ships no type hints
from harness import (
    BACKENDS,
    BENCH,
    TEMPLATE,
    Stats,
    bake,
    memory_kib,
    migrated_database,
    processes,
    python,
    redis_server,
    serving,
)
from peers import PEERS, measure
from pg_server import postgres_server
from redis import Redis
from rq import Worker


@dataclass(frozen=True)
class Counts:
    bake_runs: int = 5
    http_requests: int = 600
    http_concurrency: int = 16
    http_runs: int = 3
    # Untimed requests to each server first (see Bench.loads).
    http_warmup: int = 64
    # Each database's enqueue rows serve from this many uvicorn processes, group by group.
    web_processes: tuple[int, ...] = (1, 4)
    jobs: int = 2000
    # Submitted one by one, a rate steady after the first few jobs: half as many, half the
    # time, the same figure within its runs' spread.
    jobs_one_by_one: int = 1000
    # The second end-to-end row of each in-process backend submits this many at a time.
    jobs_per_transaction: int = 100
    # The processes that run jobs, for rq and celery: a worker pool, or a worker's
    # prefork children.
    worker_processes: int = 2
    # RQ's stock worker forks for every job: tens of jobs/s, so fewer for its baseline.
    rq_baseline_jobs: int = 200
    e2e_runs: int = 3
    batch_items: int = 100_000
    # A batch of 100,000 example items runs 25 ms: medians of 9 steady what a busy moment
    # of the machine adds to one of them.
    batch_runs: int = 9
    upload_mib: int = 1024
    upload_runs: int = 2
    idle_runs: int = 3
    dashboard_jobs: int = 100_000
    dashboard_runs: int = 15


SMOKE = Counts(
    bake_runs=1,
    http_requests=20,
    http_concurrency=4,
    http_runs=1,
    http_warmup=0,
    # One group, of several processes: one process is the same code with --workers 1.
    web_processes=(2,),
    jobs=20,
    jobs_one_by_one=10,
    jobs_per_transaction=5,
    rq_baseline_jobs=10,
    e2e_runs=1,
    batch_items=1000,
    batch_runs=1,
    upload_mib=2,
    upload_runs=1,
    idle_runs=1,
    dashboard_jobs=200,
    dashboard_runs=1,
)
CASES = ("bake", "enqueue", "e2e", "batch", "upload", "idle", "dashboard", "peers")
DATABASES = ("sqlite", "postgresql")
EMAIL = {"to": "ada@example.com", "subject": "Welcome", "body": "Hello, Ada."}
Row = dict[str, Any]


def runs(count: int, measure: Callable[[int], dict[str, float]]) -> dict[str, Stats]:
    """Run `measure` `count` times; the statistics of each figure it returns."""
    results = [measure(run) for run in range(count)]
    return {key: Stats.of([result[key] for result in results]) for key in results[0]}


class Bench:
    def __init__(self, counts: Counts, work: Path) -> None:
        self.counts = counts
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        # The SQLite projects, by backend; PostgreSQL's only in the e2e case.
        self.projects = {backend: bake(backend, work / "projects") for backend in BACKENDS}
        self.pg_projects = {
            backend: bake(backend, work / "projects", "postgresql") for backend in BACKENDS
        }
        self.redis_url = ""
        self.postgres_url = ""
        self.pg_migrated: set[str] = set()

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def database(self, backend: str, database: str = "sqlite") -> str:
        """A fresh database for one run: a copy of one migrated per backend."""
        if database == "postgresql":
            return self.pg_database(backend)
        template = self.work / "db" / backend / "migrated.db"
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            migrated_database(self.projects[backend], f"sqlite+aiosqlite:///{template}")
        copy = template.with_name(f"{uuid.uuid4().hex}.db")
        shutil.copyfile(template, copy)
        return f"sqlite+aiosqlite:///{copy}"

    def pg_database(self, backend: str) -> str:
        """A fresh PostgreSQL database, created from one migrated per backend."""
        template, name = f"migrated_{backend}", f"run_{uuid.uuid4().hex}"
        server = self.postgres_url.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+asyncpg://"
        )
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            if template not in self.pg_migrated:
                connection.execute(f"CREATE DATABASE {template}")
                migrated_database(self.pg_projects[backend], f"{server}/{template}")
                self.pg_migrated.add(template)
            connection.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return f"{server}/{name}"

    def service_settings(self, backend: str, database: str = "sqlite") -> dict[str, str]:
        settings = {
            "DATABASE_URL": self.database(backend, database),
            "JOB_PENDING_LIMIT": str(10 * self.counts.jobs),
            "JOB_SHUTDOWN_GRACE_SECONDS": "1",
            "STORAGE_DIR": str(self.work / "storage"),
            "CLEANUP_SCHEDULE": "",
        }
        if backend in ("rq", "celery"):
            settings["REDIS_URL"] = self.redis_url
            settings[f"{backend.upper()}_QUEUE"] = f"bench-{uuid.uuid4().hex}"
            # Several workers on this host, none scraped: no metrics port each.
            settings["METRICS_PORT"] = "0"
        return settings

    def celery_worker(self, app: str) -> list[str]:
        """Celery's own worker command, its prefork pool of worker_processes children;
        no gossip or mingle between workers (there is one)."""
        return [
            *(sys.executable, "-m", "celery", "-A", app, "worker"),
            *("--concurrency", str(self.counts.worker_processes)),
            *("--without-gossip", "--without-mingle", "--loglevel", "WARNING"),
        ]

    def workers(self, backend: str, project: Path, log: Path, settings: dict[str, str]) -> Any:
        """The service's own workers (rq, celery), up before the clock starts."""
        stack = ExitStack()
        if backend == "rq":
            worker = [sys.executable, str(BENCH / "rq_worker.py")]
            count = self.counts.worker_processes
            stack.enter_context(processes(project, worker, count, log, settings, True))
            self.wait_for_workers(settings["RQ_QUEUE"])
        elif backend == "celery":
            command = self.celery_worker("celery_worker")
            stack.enter_context(processes(project, command, 1, log, settings, True))
            self.wait_for_celery(self.counts.worker_processes)
        return stack

    # ---- 1. bake ---------------------------------------------------------------------

    def bake_case(self) -> list[Row]:
        def timed(action: Callable[[Path], object]) -> Callable[[int], dict[str, float]]:
            def measure(run: int) -> dict[str, float]:
                target = self.work / "bake" / uuid.uuid4().hex
                started = time.perf_counter()
                action(target)
                return {"ms": (time.perf_counter() - started) * 1000}

            return measure

        rows = [
            {
                "variant": backend,
                **runs(self.counts.bake_runs, timed(partial(bake, backend))),
            }
            for backend in BACKENDS
        ]
        source = TEMPLATE / "{{cookiecutter.project_slug}}"
        copy = timed(lambda target: shutil.copytree(source, target / "copy"))
        rows.append(
            {
                "variant": "copy the template's files",
                "baseline": True,
                **runs(self.counts.bake_runs, copy),
            }
        )
        return rows

    # ---- 2. enqueue over HTTP --------------------------------------------------------

    def load(self, url: str, requests: int) -> dict[str, float]:
        counts = self.counts
        result: dict[str, Any] = json.loads(
            python(
                self.projects["create_task"],
                "load.py",
                f"{url}/api/v1/emails",
                "--requests",
                str(requests),
                "--concurrency",
                str(counts.http_concurrency),
                "--body",
                json.dumps(EMAIL),
            )
        )
        if failures := result.pop("failures"):
            raise RuntimeError(f"requests to {url} failed: {failures}")
        return result

    def loads(self, url: str) -> dict[str, Stats]:
        """The runs against one server, after a warm-up: each web process has then
        compiled its statements and filled its pool."""
        if self.counts.http_warmup:
            self.load(url, self.counts.http_warmup)
        return runs(self.counts.http_runs, lambda run: self.load(url, self.counts.http_requests))

    def enqueue_case(self) -> list[Row]:
        return [
            row
            for database in DATABASES
            for web in self.counts.web_processes
            for row in self.enqueue_rows(database, web)
        ]

    def enqueue_rows(self, database: str, web: int) -> list[Row]:
        """Each backend, and the bare endpoint, served by `web` uvicorn processes on
        `database`; rq's and celery's jobs are run meanwhile by their workers."""
        projects = self.projects if database == "sqlite" else self.pg_projects

        def service(backend: str) -> dict[str, Stats]:
            project = projects[backend]
            log = self.log(f"enqueue-{backend}-{database}-{web}")
            settings = self.service_settings(backend, database)
            with ExitStack() as stack:
                stack.enter_context(self.workers(backend, project, log, settings))
                app = "job_service.main:app"
                server = stack.enter_context(serving(project, app, log, settings, web, True))
                return self.loads(server.url)

        def bare() -> dict[str, Stats]:
            project = projects["create_task"]
            settings = {"DATABASE_URL": self.database("create_task", database)}
            log = self.log(f"enqueue-bare-{database}-{web}")
            with serving(project, "bare_app:app", log, settings, web, True) as server:
                return self.loads(server.url)

        group = {"database": database, "web_processes": web}
        rows: list[Row] = [
            {"variant": backend, **group, **service(backend)} for backend in BACKENDS
        ]
        rows.append({"variant": "bare endpoint, same row", "baseline": True, **group, **bare()})
        return rows

    # ---- 3. end to end ---------------------------------------------------------------

    def e2e(
        self,
        project: Path,
        mode: str,
        jobs: int,
        settings: dict[str, str],
        per_transaction: int = 1,
    ) -> dict[str, Stats]:
        """The e2e runs of one mode, in one process: it starts once, not once per run."""
        arguments = [mode, "--jobs", str(jobs), "--per-transaction", str(per_transaction)]
        arguments += ["--runs", str(self.counts.e2e_runs)]
        figures: list[dict[str, float]] = json.loads(
            python(project, "e2e.py", *arguments, **settings)
        )
        return {key: Stats.of([run[key] for run in figures]) for key in figures[0]}

    def wait_for_workers(self, queue: str) -> None:
        with Redis.from_url(self.redis_url) as redis:
            deadline = time.monotonic() + 60
            while len([w for w in Worker.all(connection=redis) if queue in w.queue_names()]) < (
                self.counts.worker_processes
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the RQ workers did not start")
                time.sleep(0.05)

    def wait_for_celery(self, children: int) -> None:
        """Until the one Celery worker answers, with its pool of `children` up."""
        app = Celery(broker=self.redis_url, set_as_current=False)
        deadline = time.monotonic() + 60
        while True:
            stats = app.control.inspect(timeout=0.5).stats() or {}
            pools = [len(worker["pool"]["processes"]) for worker in stats.values()]
            if pools and pools[0] >= children:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start")
        app.close()

    def e2e_case(self) -> list[Row]:
        return [row for database in DATABASES for row in self.e2e_rows(database)]

    def e2e_rows(self, database: str) -> list[Row]:
        counts = self.counts
        projects = self.projects if database == "sqlite" else self.pg_projects
        sizes = (1, counts.jobs_per_transaction)
        jobs = {1: counts.jobs_one_by_one, counts.jobs_per_transaction: counts.jobs}
        rows: list[Row] = []
        for backend in ("create_task", "aiojobs"):
            for per_transaction in sizes:

                def measure(mode: str, backend: str = backend, size: int = per_transaction) -> Any:
                    settings = self.service_settings(backend, database)
                    return self.e2e(projects[backend], mode, jobs[size], settings, size)

                rows.append(
                    {
                        "backend": backend,
                        "database": database,
                        "jobs": jobs[per_transaction],
                        "per_transaction": per_transaction,
                        "service": measure("service"),
                        "baseline": measure(f"raw-{backend}"),
                        "baseline_name": f"raw {backend}",
                    }
                )

        def rq(
            mode: str, command: Callable[[str], list[str]], jobs: Callable[[int], int]
        ) -> dict[int, dict[str, Stats]]:
            """Each size's figures, from one RQ worker pool of worker_processes processes,
            registered before the clock starts."""
            settings = self.service_settings("rq", database)
            log = self.log(f"e2e-{mode}-{database}")
            with processes(projects["rq"], command(settings["RQ_QUEUE"]), 1, log, settings, True):
                self.wait_for_workers(settings["RQ_QUEUE"])
                return {
                    size: self.e2e(projects["rq"], mode, jobs(size), settings, size)
                    for size in sizes
                }

        workers = ["worker-pool", "-n", str(counts.worker_processes)]

        def ours(queue: str) -> list[str]:
            return [sys.executable, str(BENCH / "rq_worker.py"), *workers]

        def stock(worker_class: str) -> Callable[[str], list[str]]:
            def command(queue: str) -> list[str]:
                # RQ's own command line, its pool of the given worker class.
                pool = [sys.executable, str(BENCH / "rq_stock.py"), *workers]
                return [*pool, "--worker-class", worker_class, "--url", self.redis_url, queue]

            return command

        def forking_jobs(size: int) -> int:
            # RQ's default worker forks for every job: tens of jobs/s, so fewer jobs.
            return counts.rq_baseline_jobs

        service = rq("service", ours, jobs.__getitem__)
        baselines = {
            f"stock rq worker-pool x{counts.worker_processes} (forking Worker)": (
                rq("raw-rq", stock("rq.worker.Worker"), forking_jobs),
                forking_jobs,
            ),
            f"stock rq worker-pool x{counts.worker_processes} (SimpleWorker)": (
                rq("raw-rq", stock("rq.worker.SimpleWorker"), jobs.__getitem__),
                jobs.__getitem__,
            ),
        }
        for per_transaction in sizes:
            for name, (baseline, count) in baselines.items():
                rows.append(
                    {
                        "backend": "rq",
                        "database": database,
                        "jobs": jobs[per_transaction],
                        "per_transaction": per_transaction,
                        "service": service[per_transaction],
                        "baseline": baseline[per_transaction],
                        "baseline_name": f"{name}, {count(per_transaction)} jobs, the same "
                        "two writes",
                    }
                )

        def celery(mode: str, app: str) -> dict[int, dict[str, Stats]]:
            """Each size's figures, from one Celery worker of worker_processes children,
            up before the clock starts."""
            settings = self.service_settings("celery", database)
            log = self.log(f"e2e-celery-{mode}-{database}")
            command = self.celery_worker(app)
            with processes(projects["celery"], command, 1, log, settings, True):
                self.wait_for_celery(counts.worker_processes)
                return {
                    size: self.e2e(projects["celery"], mode, jobs[size], settings, size)
                    for size in sizes
                }

        ours_on_celery = celery("service", "celery_worker")
        celery_baselines = {
            f"stock celery worker x{counts.worker_processes} (prefork), the same two writes": (
                celery("raw-celery", "celery_raw")
            ),
            # The same run's rq rows: the other backend whose workers run the jobs.
            f"the rq backend, worker-pool x{counts.worker_processes}": service,
        }
        for per_transaction in sizes:
            for name, baseline in celery_baselines.items():
                rows.append(
                    {
                        "backend": "celery",
                        "database": database,
                        "jobs": jobs[per_transaction],
                        "per_transaction": per_transaction,
                        "service": ours_on_celery[per_transaction],
                        "baseline": baseline[per_transaction],
                        "baseline_name": name,
                    }
                )
        return rows

    # ---- 8. peers --------------------------------------------------------------------

    def peers_case(self) -> list[Row]:
        counts, work = self.counts, self.work / "peers"
        # A Redis database of their own: each peer's run starts by emptying it.
        redis_url = self.redis_url.rsplit("/", 1)[0] + "/1"
        figures: dict[str, list[dict[str, float]]] = {peer.name: [] for peer in PEERS}
        # Interleaved: a drift of the machine's speed during the case touches every peer.
        for _ in range(counts.e2e_runs):
            for peer in PEERS:
                figures[peer.name].append(
                    measure(peer, counts.jobs, redis_url, self.postgres_url, work)
                )
        return [
            {
                **asdict(peer),
                "jobs": counts.jobs,
                "service": {
                    key: Stats.of([run[key] for run in figures[peer.name]])
                    for key in figures[peer.name][0]
                },
            }
            for peer in PEERS
        ]

    # ---- 4. batch --------------------------------------------------------------------

    def batch_case(self) -> Row:
        project, items = self.projects["create_task"], self.counts.batch_items
        count = self.counts.batch_runs
        payload = {"name": "bench", "items": [f"item-{index}" for index in range(items)]}

        def batch(url: str) -> dict[str, float]:
            posted = datetime.now(UTC)
            accepted = httpx.post(f"{url}/api/v1/batches", json=payload, timeout=120)
            accepted.raise_for_status()
            batch_url = f"{url}/api/v1/batches/{accepted.json()['id']}"
            # Times come from the batch's own timestamps (same clock, same machine), so the
            # look can come late: a GET answered on the batch's event loop would be timed
            # with it.
            time.sleep(0.1)
            while (batch := httpx.get(batch_url).json())["completed_at"] is None:
                time.sleep(0.1)
            if batch["processed_items"] != items:
                raise RuntimeError(f"the batch processed {batch['processed_items']} of {items}")
            completed = datetime.fromisoformat(batch["completed_at"])
            processing = completed - datetime.fromisoformat(batch["started_at"])
            return {
                "processing_seconds": processing.total_seconds(),
                "wall_seconds": (completed - posted).total_seconds(),
            }

        settings = self.service_settings("create_task") | {"MAX_BATCH_ITEMS": str(items)}
        with serving(project, "job_service.main:app", self.log("batch"), settings) as web:
            # One batch first, not timed: a service has run one before (statements compiled,
            # the interpreter's code warmed), as the baseline runs one loop untimed.
            batch(web.url)
            measured = runs(count, lambda run: batch(web.url))

        loops = python(project, "batch.py", "--items", str(items), "--runs", str(count))
        baseline = {"seconds": Stats.of(json.loads(loops))}
        overhead = (measured["processing_seconds"].median / baseline["seconds"].median - 1) * 100
        return {
            "items": items,
            "service": measured,
            "baseline": baseline,
            "overhead_percent": overhead,
        }

    # ---- 5. upload -------------------------------------------------------------------

    def upload_case(self) -> list[Row]:
        project, mib = self.projects["create_task"], self.counts.upload_mib

        def upload(app: str, path: str) -> Callable[[int], dict[str, float]]:
            def measure(run: int) -> dict[str, float]:
                settings = self.service_settings("create_task") | {
                    "MAX_UPLOAD_BYTES": str((mib + 1) * 1024 * 1024)
                }
                with serving(project, app, self.log("upload"), settings) as web:
                    sent = json.loads(
                        python(project, "upload.py", f"{web.url}{path}", "--mib", str(mib))
                    )
                    if sent["status"] >= 400:
                        raise RuntimeError(f"the upload to {app} got {sent['status']}")
                    peak = memory_kib(web.process.pid, "VmHWM") / 1024
                return {"mb_per_second": mib * 1.048576 / sent["seconds"], "peak_rss_mib": peak}

            return measure

        return [
            {
                "variant": "service",
                **runs(
                    self.counts.upload_runs, upload("job_service.main:app", "/api/v1/documents")
                ),
            },
            {
                "variant": "bare endpoint, body to a file",
                "baseline": True,
                **runs(self.counts.upload_runs, upload("bare_app:app", "/upload")),
            },
        ]

    # ---- 6. idle ---------------------------------------------------------------------

    def idle_case(self) -> list[Row]:
        def idle(backend: str, app: str) -> Callable[[int], dict[str, float]]:
            def measure(run: int) -> dict[str, float]:
                settings = self.service_settings(backend)
                with serving(self.projects[backend], app, self.log("idle"), settings) as web:
                    time.sleep(1)
                    rss = memory_kib(web.process.pid, "VmRSS") / 1024
                    return {"startup_seconds": web.started_seconds, "rss_mib": rss}

            return measure

        rows: list[Row] = [
            {
                "variant": backend,
                **runs(self.counts.idle_runs, idle(backend, "job_service.main:app")),
            }
            for backend in BACKENDS
        ]
        rows.append(
            {
                "variant": "bare FastAPI app",
                "baseline": True,
                **runs(self.counts.idle_runs, idle("create_task", "bare_app:app")),
            }
        )
        return rows

    # ---- 7. dashboard ----------------------------------------------------------------

    def dashboard_case(self) -> list[Row]:
        counts = self.counts
        arguments = ["--jobs", str(counts.dashboard_jobs), "--runs", str(counts.dashboard_runs)]
        database = self.database("create_task")
        output = python(
            self.projects["create_task"], "dashboard.py", *arguments, DATABASE_URL=database
        )
        pages: dict[str, Any] = json.loads(output)["pages"]
        return [
            {
                "variant": page,
                "baseline": page.startswith("baseline"),
                "queries": measured["queries"],
                "ms": Stats.of(measured["ms"]),
            }
            for page, measured in pages.items()
        ]

    def run(self, names: list[str]) -> dict[str, Any]:
        with (
            redis_server(self.log("redis")) as self.redis_url,
            postgres_server(self.work / "postgresql", self.log("postgresql")) as self.postgres_url,
        ):
            cases: dict[str, Any] = {}
            for name in names:
                case: Callable[[], list[Row]] = getattr(self, f"{name}_case")
                started = time.perf_counter()
                cases[name] = case()
                print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        return cases


def as_json(value: Any) -> Any:
    if isinstance(value, Stats):
        return asdict(value)
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one run each")
    parser.add_argument("--only", help="comma-separated cases, e.g. enqueue,e2e")
    parser.add_argument("--output", type=Path, default=TEMPLATE / "bench" / "results")
    options = parser.parse_args()
    counts = SMOKE if options.smoke else Counts()
    names = options.only.split(",") if options.only else list(CASES)
    if unknown := set(names) - set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        cases = Bench(counts, Path(work)).run(names)
    results = {
        "command": "make bench" if not options.smoke else "python bench/run.py --smoke",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
        "smoke": options.smoke,
        "counts": asdict(counts),
        "machine": report.machine(),
        "sqlite": sqlite3.sqlite_version,
        "cases": as_json(cases),
    }
    options.output.mkdir(parents=True, exist_ok=True)
    if options.only:
        (options.output / "only.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {options.output}/only.json")
        return
    (options.output / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (options.output / "latest.md").write_text(report.markdown(results))
    report.chart(results, options.output / "latest.png")
    print(f"wrote {options.output}/latest.md, latest.json and latest.png")


if __name__ == "__main__":
    main()
