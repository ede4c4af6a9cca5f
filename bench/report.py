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

LIBRARIES = ("fastapi", "uvicorn", "sqlalchemy", "aiosqlite", "aiojobs", "rq", "redis")


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
        "libraries": {name: metadata.version(name) for name in LIBRARIES},
    }


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
        "one uvicorn process, at LOG_LEVEL=WARNING.",
        "",
        f"Machine: {host['cpus']} CPUs ({host['cpu']}), {host['system']}, Python "
        f"{host['python']}, SQLite {results['sqlite']}, redis-server {host['redis_server']}; "
        f"{libraries}.",
        "",
        "## 1. Bake (render only, no installs)",
        "",
        "| project | ms |",
        "| --- | --- |",
    ]
    lines += [f"| {row['variant']} | {figure(row['ms'])} |" for row in cases["bake"]]
    bare = next(row for row in cases["enqueue"] if row.get("baseline"))
    lines += [
        "",
        f"## 2. Enqueue over HTTP: `POST /api/v1/emails`, {counts['http_requests']} requests, "
        f"{counts['http_concurrency']} at a time",
        "",
        "| backend | requests/s | p50 ms | p99 ms | vs bare |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in cases["enqueue"]:
        rps = row["requests_per_second"]
        lines.append(
            f"| {row['variant']} | {figure(rps)} | {figure(row['p50_ms'], 1)} | "
            f"{figure(row['p99_ms'], 1)} | {ratio(rps, bare['requests_per_second'])} |"
        )
    lines += [
        "",
        "## 3. End to end: jobs submitted until all are `succeeded`",
        "",
        "One by one is a transaction per job, as one request makes one job; grouped is "
        "`submit_many`, one transaction for the group, as a fan-out does. The baselines "
        "insert the same groups.",
        "",
        "| backend | submitted | jobs | jobs/s | p50 ms | p99 ms | baseline | its jobs/s "
        "| its p50 ms | its p99 ms | vs baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in cases["e2e"]:
        ours, theirs = row["service"], row["baseline"]
        lines.append(
            f"| {row['backend']} | {submitted(row)} | {row['jobs']} | "
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
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    rows = results["cases"]["e2e"]
    labels = [f"{row['backend']}\n{submitted(row)}" for row in rows]
    ours = [row["service"]["jobs_per_second"]["median"] for row in rows]
    theirs = [row["baseline"]["jobs_per_second"]["median"] for row in rows]
    positions = range(len(rows))
    figure_, axes = plt.subplots(figsize=(9, 4.5), dpi=120)
    width = 0.38
    axes.bar([p - width / 2 for p in positions], ours, width, label="baked service")
    axes.bar([p + width / 2 for p in positions], theirs, width, label="raw baseline")
    for position, value in zip(positions, ours, strict=True):
        axes.annotate(f"{value:.0f}", (position - width / 2, value), ha="center", va="bottom")
    for position, value in zip(positions, theirs, strict=True):
        axes.annotate(f"{value:.0f}", (position + width / 2, value), ha="center", va="bottom")
    axes.set_xticks(list(positions), labels)
    axes.set_ylabel("jobs/s, end to end (median)")
    axes.set_title(f"End-to-end throughput, SQLite, {results['machine']['cpus']} CPUs")
    axes.legend()
    figure_.tight_layout()
    figure_.savefig(path)
    plt.close(figure_)
