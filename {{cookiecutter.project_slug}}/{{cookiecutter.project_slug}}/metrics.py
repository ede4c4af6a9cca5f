"""Prometheus metrics, correct however many processes serve{% if cookiecutter.job_backend in ("rq", "celery") %} and work{% endif %}, on however many hosts.

In the web processes counters and histograms use the client's multiprocess mode: each
process on a host writes its counts to files in that host's `METRICS_DIR`, and
`GET /metrics`, whichever of them answers it, adds up the files of all of them. Files
are named by slot, not by pid: a process takes the lowest slot no live process holds, so
a restarted process carries on from a dead one's files and their number stays that of
the processes running at once.
{% if cookiecutter.job_backend in ("rq", "celery") %}
Each worker keeps its counts in memory and serves them itself on `METRICS_PORT`: nothing
is shared between processes or hosts, and the totals over every target are the jobs run.
{%- else %}
Scrape every host: nothing is shared between hosts, and the totals over them are the
jobs run.
{%- endif %}

Metrics of your own are made the usual way, e.g. `Counter("signups", "...")` in any module,
labelled or not: they are counted and shown like these, whenever they were created.

Gauges that describe the queue (queued, running, oldest waiting, executors alive) are
read from the database at scrape time: every host reports the same values for the whole
service, so aggregate them with max(), not sum().
"""

{% if cookiecutter.job_backend in ("rq", "celery") -%}
import errno
{% endif -%}
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from weakref import WeakSet

from prometheus_client import (
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    REGISTRY,
{%- endif %}
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    start_http_server,
{%- endif %}
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Jobs last from milliseconds to an hour; waits in the queue as long.
JOB_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# registry=None: these are exposed from the files, through render(), not a global registry.
JOBS = Counter(
    "jobs",
    "Job outcomes: succeeded; failed (no attempt left); retried (an attempt failed and "
    "another is queued); cancelled.",
    ["name", "status"],
    registry=None,
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "How long job attempts ran, succeeded or failed.",
    ["name"],
    buckets=JOB_SECONDS_BUCKETS,
    registry=None,
)
JOB_QUEUE_WAIT = Histogram(
    "job_queue_wait_seconds",
    "How long jobs waited, once due, until an executor started them.",
    ["name"],
    buckets=JOB_SECONDS_BUCKETS,
    registry=None,
)
HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests by route template.",
    ["method", "route", "status"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    registry=None,
)


class _Slot:
    """This process's slot: the lowest one whose lock no live process holds. The kernel
    drops a lock when its process dies, however it dies."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._pid = 0
        self._slot = 0
        self._lock: IO[str] | None = None

    def __call__(self) -> int:
        # Called before every write: a forked child must not share its parent's files.
        if self._pid != os.getpid():
            self._slot, self._lock = self._claim()
            self._pid = os.getpid()
        return self._slot

    def _claim(self) -> tuple[int, IO[str]]:
        slot = 0
        while True:
            lock = (self._directory / f"slot-{slot}.lock").open("w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                slot += 1
                continue
            return slot, lock  # kept open: the lock lasts as long as the process


# Where values are kept: in memory until configure() names a directory.
_value_class: Any = values.MutexValue
_directory: Path | None = None


class _Value:
    """A metric's value, made by the value class of configure() when it is called after
    the metric was created: a metric created at import is counted in the shared files
    like the others."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._arguments = args, kwargs
        self._value: Any = None
        if _directory is None:
            _waiting.add(self)
        else:
            self.make()

    def make(self) -> None:
        """Keep the value where the current value class does (counts so far are dropped)."""
        args, kwargs = self._arguments
        self._value = _value_class(*args, **kwargs)

    def _current(self) -> Any:
        if self._value is None:
            self.make()
        return self._value

    def inc(self, amount: float) -> None:
        self._current().inc(amount)

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._current().set(value, timestamp)

    def set_exemplar(self, exemplar: Any) -> None:
        self._current().set_exemplar(exemplar)

    def get(self) -> float:
        value: float = self._current().get()
        return value

    def get_exemplar(self) -> Any:
        return self._current().get_exemplar()


# Values made before configure(): it makes them in the files.
_waiting: WeakSet[_Value] = WeakSet()
# Before any metric below, or of the service's own, is created. The client reads this
# module attribute whenever it makes a metric's value, but does not document it:
# tests/test_metrics.py fails with a clear message if a release stops reading it.
values.ValueClass = _Value


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    value: float


class _Gauges(Collector):
    def __init__(self, gauges: list[Gauge]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for gauge in self._gauges:
            yield GaugeMetricFamily(gauge.name, gauge.help, value=gauge.value)


def configure(directory: Path) -> None:
    """Keep this process's counts under `directory`; once per process, at start-up."""
    global _directory
    directory = directory.resolve()
    if _directory is not None:
        if directory != _directory:
            raise RuntimeError(f"this process keeps its metrics in {_directory} already")
        return
    directory.mkdir(parents=True, exist_ok=True)
    # The client opens each file in the directory this variable names.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    global _value_class
    _value_class = values.MultiProcessValue(_Slot(directory))  # type: ignore[no-untyped-call]  # untyped in the client
    _directory = directory
    for value in list(_waiting):
        value.make()  # in the files from now on, each bucket of a histogram included
{%- if cookiecutter.job_backend in ("rq", "celery") %}


# How many ports from METRICS_PORT up the workers of one host may take.
METRICS_PORTS = 64


def serve(host: str, first_port: int) -> int:
    """Serve this process's own counts (the job metrics and any of the service's own) on
    http://host:port/metrics, from a thread, on the first free port from `first_port` up:
    each worker on a host, and each {% if cookiecutter.job_backend == "rq" %}of an `rq worker-pool`{% else %}child process of a Celery worker{% endif %}, takes the next. Counted in
    memory, even where PROMETHEUS_MULTIPROC_DIR is set for the web processes."""
    for metric in (JOBS, JOB_DURATION, JOB_QUEUE_WAIT):
        REGISTRY.register(metric)
    last_port = min(first_port + METRICS_PORTS - 1, 65535)
    for port in range(first_port, last_port + 1):
        try:
            start_http_server(port, host, registry=REGISTRY)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                continue
            raise SystemExit(
                f"cannot serve metrics on {host}:{port} ({error.strerror}); METRICS_PORT=0 "
                "serves none"
            ) from error
        return port
    raise SystemExit(
        f"cannot serve metrics: ports {first_port}-{last_port} of {host} are all taken; "
        "set another METRICS_PORT, or 0 to serve none"
    )


{%- endif %}


def render(gauges: list[Gauge]) -> bytes:
    """The counts of every process sharing the directory, and `gauges`, as Prometheus text."""
    if _directory is None:
        raise RuntimeError("metrics.configure() has not been called in this process")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(_directory))  # type: ignore[no-untyped-call]  # untyped in the client
    registry.register(_Gauges(gauges))
    return generate_latest(registry)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def job_started(name: str, waited_seconds: float) -> None:
    JOB_QUEUE_WAIT.labels(name).observe(max(waited_seconds, 0.0))


def job_ended(name: str, status: str, seconds: float) -> None:
    """An attempt ended: succeeded, failed or retried."""
    JOBS.labels(name, status).inc()
    JOB_DURATION.labels(name).observe(seconds)


def job_counted(name: str, status: str) -> None:
    """An outcome that no attempt of this process measured: cancelled, or recovered after
    its process died."""
    JOBS.labels(name, status).inc()
