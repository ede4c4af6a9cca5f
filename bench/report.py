"""The results of a run as a Markdown table, and as a chart of end-to-end throughput."""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after choosing the backend

LIBRARIES = ("fastapi", "uvicorn", "sqlalchemy", "aiosqlite", "asyncpg", "aiojobs", "rq", "redis")
PEER_LIBRARIES = ("saq", "taskiq", "dramatiq", "celery", "arq", "procrastinate")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = models[0].split(":", 1)[1].strip() if models else cpu
    redis = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_server": redis.stdout.split()[2].removeprefix("v=") if redis.stdout else "?",
        "libraries": {name: metadata.version(name) for name in LIBRARIES + PEER_LIBRARIES},
        "postgresql": postgres_version(),
    }


def postgres_version() -> str:
    try:
        done = subprocess.run(["postgres", "--version"], capture_output=True, text=True)
    except FileNotFoundError:
        from pg_server import bindir  # Debian keeps the server off PATH

        done = subprocess.run([bindir() / "postgres", "--version"], capture_output=True, text=True)
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    return done.stdout.split()[2] if done.stdout else "?"


def figure(stats: dict[str, float], digits: int = 0) -> str:
    """median (min-max)"""
    low, high = f"{stats['low']:.{digits}f}", f"{stats['high']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({low}-{high})"


def ratio(value: dict[str, float], baseline: dict[str, float]) -> str:
    return f"{value['median'] / baseline['median']:.2f}x"


def submitted(row: dict[str, Any]) -> str:
    size = row["per_transaction"]
    return "one by one" if size == 1 else f"{size} at a time"


def markdown(results: dict[str, Any]) -> str:
    cases, counts, host = results["cases"], results["counts"], results["machine"]
    libraries = ", ".join(f"{name} {version}" for name, version in host["libraries"].items())
    lines = [
        "# Benchmarks",
        "",
        f"`{results['command']}` on {results['date']}, {results['seconds']:.0f} s in all. "
        "Figures are medians, with min-max, of several runs; every case is measured next "
        "to its raw baseline in the same run. Services run their default SQLite project, "
        "one uvicorn process, at LOG_LEVEL=WARNING, unless a row names PostgreSQL "
        "(a server the bench starts, fsync on).",
        "",
        f"Machine: {host['cpus']} CPUs ({host['cpu']}), {host['system']}, Python "
        f"{host['python']}, SQLite {results['sqlite']}, PostgreSQL {host['postgresql']}, "
        f"redis-server {host['redis_server']} (no persistence); "
        f"{libraries}.",
        "",
        "## 1. Bake (render only, no installs)",
        "",
        "| project | ms |",
        "| --- | --- |",
    ]
    lines += [f"| {row['variant']} | {figure(row['ms'])} |" for row in cases["bake"]]
    lines += [
        "",
        f"## 2. Enqueue over HTTP: `POST /api/v1/emails`, {counts['http_requests']} requests, "
        f"{counts['http_concurrency']} at a time",
        "",
        "Each backend against the bare endpoint (the row inserted, `asyncio.create_task` a "
        "sender that marks it sent) on the same database and number of uvicorn processes. "
        "rq's and celery's workers run their jobs meanwhile. Each server takes "
        f"{counts['http_warmup']} requests untimed, then the timed runs.",
        "",
        "| backend | database | web processes | requests/s | p50 ms | p99 ms | "
        "vs bare requests/s | vs bare p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in cases["enqueue"]:
        bare = next(
            other
            for other in cases["enqueue"]
            if other.get("baseline")
            and (other["database"], other["web_processes"])
            == (row["database"], row["web_processes"])
        )
        rps = row["requests_per_second"]
        lines.append(
            f"| {row['variant']} | {row['database']} | {row['web_processes']} | {figure(rps)} | "
            f"{figure(row['p50_ms'], 1)} | {figure(row['p99_ms'], 1)} | "
            f"{ratio(rps, bare['requests_per_second'])} | "
            f"{ratio(row['p99_ms'], bare['p99_ms'])} |"
        )
    lines += [
        "",
        "## 3. End to end: jobs submitted until all are `succeeded`",
        "",
        "One by one is a transaction per job, as one request makes one job; grouped is "
        "`submit_many`, one transaction for the group, as a fan-out does. The baselines "
        "insert the same groups. The runs of a row follow each other in one process (and "
        "one set of workers), each run's rows deleted before the next.",
        "",
        "| backend | database | submitted | jobs | jobs/s | p50 ms | p99 ms | baseline "
        "| its jobs/s | its p50 ms | its p99 ms | vs baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in cases["e2e"]:
        ours, theirs = row["service"], row["baseline"]
        lines.append(
            f"| {row['backend']} | {row['database']} | {submitted(row)} | {row['jobs']} | "
            f"{figure(ours['jobs_per_second'])} | "
            f"{figure(ours['p50_ms'], 1)} | {figure(ours['p99_ms'], 1)} | "
            f"{row['baseline_name']} | {figure(theirs['jobs_per_second'])} | "
            f"{figure(theirs['p50_ms'], 1)} | {figure(theirs['p99_ms'], 1)} | "
            f"{ratio(ours['jobs_per_second'], theirs['jobs_per_second'])} |"
        )
    batch = cases["batch"]
    service = batch["service"]
    lines += [
        "",
        f"## 4. Batch: {batch['items']} items",
        "",
        "One server runs a batch untimed, then the timed ones. The plain loop runs in a process "
        "like the service's (its modules imported, on uvloop), once untimed, then as many "
        "times.",
        "",
        "| | seconds |",
        "| --- | --- |",
        f"| batch job, from start to completed | {figure(service['processing_seconds'], 3)} |",
        f"| the same, from POST to completed | {figure(service['wall_seconds'], 3)} |",
        f"| plain loop over the same item function | {figure(batch['baseline']['seconds'], 3)} |",
        "",
        f"Progress tracking overhead: {batch['overhead_percent']:.1f} %.",
        "",
        f"## 5. Upload: {counts['upload_mib']} MiB, multipart",
        "",
        "| endpoint | MB/s | server peak RSS MiB |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {row['variant']} | {figure(row['mb_per_second'])} | {figure(row['peak_rss_mib'])} |"
        for row in cases["upload"]
    ]
    lines += [
        "",
        "## 6. Idle: start-up to the first `/health` 200, and resident memory",
        "",
        "| app | start-up s | RSS MiB |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {row['variant']} | {figure(row['startup_seconds'], 2)} | {figure(row['rss_mib'])} |"
        for row in cases["idle"]
    ]
    if "dashboard" in cases:
        lines += [
            "",
            f"## 7. Dashboard: each page over {counts['dashboard_jobs']:,} job rows",
            "",
            "Rendered in process through ASGI (no network), after one warm-up request. "
            "Statements are those the page sends to the database.",
            "",
            "| page | ms | SQL statements |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {row['variant']} | {figure(row['ms'], 1)} | {row['queries']:.0f} |"
            for row in cases["dashboard"]
        ]
    if "peers" in cases:
        lines += peers(cases)
    return "\n".join(lines) + "\n"


def peers(cases: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## 8. Peers: the job systems users pick instead",
        "",
        "Each runs its standard worker command as 2 processes with the concurrency shown, "
        "on the same redis-server and PostgreSQL, with the same empty job body; timed from "
        "the first enqueue until the peer's own status API says the last job is done. Runs "
        "interleave with the other peers'.",
        "",
        "| system | keeps | concurrency | jobs | jobs/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row['name']} | {row['keeps']} | {row['concurrency']} | {row['jobs']} | "
        f"{figure(row['service']['jobs_per_second'])} |"
        for row in cases["peers"]
    ]
    if "e2e" not in cases:
        return lines
    lines += [
        "",
        "Against them (the e2e rows of section 3, same run):",
        "",
        "| ours | jobs/s | against | its jobs/s | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {label} | {ours:.0f} | {name} | {theirs:.0f} | {ours / theirs:.2f}x |"
        for label, ours, name, theirs in comparisons(cases)
    ]
    return lines


def comparisons(cases: dict[str, Any]) -> list[tuple[str, float, str, float]]:
    """Each e2e row against Celery, and against the fastest peer that keeps a PostgreSQL
    row (the same durability), submitted the same way: one by one, or in groups."""
    rate = {row["name"]: row["service"]["jobs_per_second"]["median"] for row in cases["peers"]}
    on_postgres = [row["name"] for row in cases["peers"] if row["server"] == "postgresql"]
    one_by_one = [name for name in on_postgres if "at a time" not in name]
    rows = []
    for row in cases["e2e"]:
        label = f"{row['backend']}, {row['database']}, {submitted(row)}"
        ours = row["service"]["jobs_per_second"]["median"]
        durable = max(
            one_by_one if row["per_transaction"] == 1 else on_postgres, key=rate.__getitem__
        )
        for name in ("Celery on Redis", durable):
            rows.append((label, ours, name, rate[name]))
    return rows


def chart(results: dict[str, Any], path: Path) -> None:
    """The e2e rows beside their raw baselines, then the peers, in jobs/s."""
    rows, peer_rows = results["cases"]["e2e"], results["cases"].get("peers", [])
    labels = [f"{row['backend']}\n{row['database']}\n{submitted(row)}" for row in rows]
    labels += [row["name"].replace(" on ", "\n").replace(", ", "\n") for row in peer_rows]
    ours = [row["service"]["jobs_per_second"]["median"] for row in rows]
    theirs = [row["baseline"]["jobs_per_second"]["median"] for row in rows]
    others = [row["service"]["jobs_per_second"]["median"] for row in peer_rows]
    width = 0.38
    bars: list[tuple[list[float], list[float], str]] = [
        ([p - width / 2 for p in range(len(rows))], ours, "baked service"),
        ([p + width / 2 for p in range(len(rows))], theirs, "raw baseline"),
        ([float(len(rows) + p) for p in range(len(peer_rows))], others, "peer"),
    ]
    figure_, axes = plt.subplots(figsize=(18, 6), dpi=110)
    for positions, values, label in bars:
        if not values:
            continue
        axes.bar(positions, values, width, label=label)
        for position, value in zip(positions, values, strict=True):
            axes.annotate(f"{value:.0f}", (position, value), ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(labels)), labels, fontsize=7)
    axes.set_ylabel("jobs/s, end to end (median)")
    axes.set_title(f"End-to-end throughput, {results['machine']['cpus']} CPUs")
    axes.legend()
    figure_.tight_layout()
    figure_.savefig(path)
    plt.close(figure_)
