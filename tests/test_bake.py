"""Every combination of answers bakes into a clean, lint-free, type-checked project."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import ALL_COMBINATIONS, PROJECT_TEMPLATE, TOOLS, Combination, bake, run

SLUG = "job_service"
# Words that name each backend; a project baked for one backend carries none of the others'.
# asyncio's own `.create_task(...)` is the event loop's API, not the backend's name.
BACKEND_WORDS = {
    "create_task": re.compile(r"(?<!\.)create_task", re.IGNORECASE),
    "aiojobs": re.compile(r"aiojobs", re.IGNORECASE),
    "rq": re.compile(r"\brq(\b|_)", re.IGNORECASE),
    "celery": re.compile(r"celery|flower|kombu|billiard", re.IGNORECASE),
}
# Redis is the broker of rq and celery; the in-process backends carry no word of it.
REDIS_BACKENDS = ("rq", "celery")
REDIS_WORDS = re.compile(r"redis", re.IGNORECASE)
DATABASE_WORDS = {
    "sqlite": re.compile(r"sqlite", re.IGNORECASE),
    "postgresql": re.compile(r"postgres|asyncpg", re.IGNORECASE),
}
JINJA = re.compile(r"\{\{|\{%|\{#")
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def expected_files(combination: Combination) -> set[str]:
    files = {
        ".cookiecutter.json",
        ".env.example",
        ".gitattributes",
        ".gitignore",
        "Makefile",
        "README.md",
        "alembic.ini",
        "pyproject.toml",
        "migrations/env.py",
        "migrations/script.py.mako",
        "migrations/versions/0001_initial.py",
        "tests/__init__.py",
        "tests/app.py",
        "tests/test_api_fuzz.py",
        "tests/conftest.py",
        "tests/processes.py",
        "tests/tasks.py",
        "tests/test_batches.py",
        "tests/test_cli.py",
        "tests/test_dashboard.py",
        "tests/test_dashboard_browser.py",
        "docs/dashboard.png",
        "tests/test_cleanup.py",
        "tests/test_crash.py",
        "tests/test_documents.py",
        "tests/test_emails.py",
        "tests/test_emails_smtp.py",
        "tests/test_jobs.py",
        "tests/test_job_lifecycle.py",
        "tests/test_job_outcomes.py",
        "tests/test_jobs_api.py",
        "tests/test_health.py",
        "tests/test_logs.py",
        "tests/test_metrics.py",
        "tests/test_api_keys.py",
        "tests/test_proxy_headers.py",
        "tests/test_request_limits.py",
        "tests/test_batching.py",
        "tests/test_migrations.py",
        "tests/test_outage.py",
        "tests/test_web_concurrency.py",
        "tests/load.py",
        "tests/test_models.py",
        "tests/test_reports.py",
        "tests/test_schedules.py",
        "tests/test_settings.py",
        *(
            f"{SLUG}/{name}"
            for name in (
                "__init__.py",
                "__main__.py",
                "api/__init__.py",
                "api/batches.py",
                "api/body_limit.py",
                "api/deps.py",
                "api/documents.py",
                "api/emails.py",
                "api/errors.py",
                "api/fields.py",
                "api/idempotency.py",
                "api/health.py",
                "api/job_routes.py",
                "api/keys.py",
                "api/metrics.py",
                "api/reports.py",
                "api/responses.py",
                "api/schedules.py",
                "cli.py",
                "clock.py",
                "dashboard/__init__.py",
                "dashboard/access.py",
                "dashboard/pages.py",
                "dashboard/static/dashboard.css",
                "dashboard/static/dashboard.js",
                "dashboard/static/favicon.svg",
                "dashboard/templates/base.html",
                "dashboard/templates/job.html",
                "dashboard/templates/jobs.html",
                "dashboard/templates/login.html",
                "dashboard/templates/overview.html",
                "dashboard/templates/schedules.html",
                "db.py",
                "jobs/__init__.py",
                "jobs/backend.py",
                "jobs/base.py",
                "jobs/batching.py",
                "jobs/control.py",
                "jobs/errors.py",
                "jobs/poller.py",
                "jobs/registry.py",
                "jobs/runner.py",
                "jobs/executor_writes.py",
                "jobs/moves.py",
                "jobs/reads.py",
                "jobs/recovery.py",
                "main.py",
                "metrics.py",
                "models.py",
                "observability.py",
                "settings.py",
                "storage.py",
                "tasks/batches.py",
                "tasks/cleanup.py",
                "tasks/documents.py",
                "tasks/__init__.py",
                "tasks/emails.py",
                "tasks/reports.py",
            )
        ),
    }
    if combination.job_backend in REDIS_BACKENDS:
        files |= {
            f"{SLUG}/jobs/loop.py",
            f"{SLUG}/worker.py",
            "tests/redis_server.py",
            f"tests/test_{combination.job_backend}_tools.py",
            "tests/test_worker.py",
            "tests/worker.py",
        }

    if combination.database == "postgresql":
        files |= {"tests/pg_server.py", "tests/test_clock_skew.py"}
    if combination.use_docker == "y":
        # .env: the compose stack's secrets, made at bake (hooks/post_gen_project.py).
        files |= {"Dockerfile", ".dockerignore", "compose.yaml", ".env"}
    if combination.use_github_actions == "y":
        files |= {".github/dependabot.yml", ".github/workflows/ci.yml"}
    return files


def expected_dependencies(combination: Combination) -> set[str]:
    common = {
        "aiosmtplib",
        "alembic",
        "cronsim",
        "anyio",
        "email-validator",
        "fastapi",
        "itsdangerous",
        "jinja2",
        "pydantic-settings",
        "prometheus-client",
        "python-multipart",
        "sqlalchemy",
        "sqlmodel",
        "structlog",
        "typer",
        "uvicorn",
    }
    by_backend = {
        "create_task": set(),
        "aiojobs": {"aiojobs"},
        "rq": {"redis", "rq"},
        "celery": {"celery", "redis"},
    }
    by_database = {"sqlite": {"aiosqlite"}, "postgresql": {"asyncpg"}}
    return common | by_backend[combination.job_backend] | by_database[combination.database]


def project_files(project: Path) -> dict[str, str]:
    """Every file's text; the README's screenshot, a PNG, as no text."""
    return {
        str(path.relative_to(project)): "" if path.suffix == ".png" else path.read_text()
        for path in sorted(project.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and ".mypy_cache" not in path.parts
    }


@pytest.mark.parametrize("combination", ALL_COMBINATIONS, ids=lambda c: c.id)
def test_combination_bakes_clean(combination: Combination, tmp_path: Path) -> None:
    project = bake(tmp_path, **combination.answers())
    assert project.name == SLUG
    files = project_files(project)
    assert set(files) == expected_files(combination)

    for name, text in files.items():
        source = PROJECT_TEMPLATE / name.replace(SLUG, "{{cookiecutter.project_slug}}")
        if name.startswith(f"{SLUG}/dashboard/templates/") or name.endswith(".png"):
            # The dashboard's own Jinja templates, and the screenshot: copied as they are.
            assert project.joinpath(name).read_bytes() == source.read_bytes(), name
        else:
            rendered = GITHUB_EXPRESSION.sub("", text) if name.startswith(".github/") else text
            assert not JINJA.search(rendered), f"unrendered template syntax in {name}"
        if name.endswith(".toml"):
            tomllib.loads(text)
        if name.endswith((".yml", ".yaml")):
            assert isinstance(yaml.safe_load(text), dict), name
        if name != ".cookiecutter.json":
            for backend, words in BACKEND_WORDS.items():
                if backend != combination.job_backend:
                    assert not words.search(text), f"{name} mentions the {backend} backend"
            if combination.job_backend not in REDIS_BACKENDS:
                assert not REDIS_WORDS.search(text), f"{name} mentions Redis"
            for database, words in DATABASE_WORDS.items():
                if database != combination.database:
                    assert not words.search(text), f"{name} mentions {database}"

    # A cookiecutter replay file: the answers under "cookiecutter" (tests/test_replay.py).
    answers = json.loads(files[".cookiecutter.json"])["cookiecutter"]
    assert {key: answers[key] for key in combination.answers()} == combination.answers()
    assert not any(key.startswith("__") or key == "_output_dir" for key in answers)

    pyproject = tomllib.loads(files["pyproject.toml"])
    names = {re.split(r"[\[<>=!~;]", dep)[0] for dep in pyproject["project"]["dependencies"]}
    assert names == expected_dependencies(combination)

    # Type checks: each backend x database's `make lint`, in tests/test_install.py (the
    # Python code is the same with or without Docker and CI).
    run([str(TOOLS / "ruff"), "check", "--no-cache", "."], cwd=project)
    run([str(TOOLS / "ruff"), "format", "--check", "--no-cache", "."], cwd=project)


def test_the_lint_and_type_checks_can_fail(tmp_path: Path, mypy_cache: Path) -> None:
    """Guard against checks that pass because they look at the wrong folder."""
    project = bake(tmp_path, job_backend="create_task")
    (project / SLUG / "extra.py").write_text("import os\n\n\ndef untyped(x):\n    return x\n")
    for command in (
        [str(TOOLS / "ruff"), "check", "--no-cache", "."],
        [str(TOOLS / "mypy"), "--cache-dir", str(mypy_cache)],
    ):
        with pytest.raises(AssertionError, match=r"extra\.py"):
            run(command, cwd=project)


def test_awkward_names_bake_clean(tmp_path: Path, mypy_cache: Path) -> None:
    slug = "a_thirty_character_slug_abcdef"
    project = bake(
        tmp_path,
        project_name="Café & <Résumé> it's a very long project name, longer than most lines",
        project_slug=slug,
        job_backend="rq",
        database="postgresql",
    )
    assert project.name == slug
    run([str(TOOLS / "ruff"), "check", "--no-cache", "."], cwd=project)
    run([str(TOOLS / "ruff"), "format", "--check", "--no-cache", "."], cwd=project)
    run([str(TOOLS / "mypy"), "--cache-dir", str(mypy_cache)], cwd=project)


def test_the_default_slug_is_derived_from_the_name(tmp_path: Path) -> None:
    assert bake(tmp_path, project_name="Order Intake-API").name == "order_intake_api"


def test_the_compose_secrets_are_made_at_bake_and_by_make_and_never_committed(
    tmp_path: Path,
) -> None:
    """Each variable compose.yaml requires has a value of this bake's own in .env; `make
    .env` (a clone's way) makes the same names; git and the image leave .env out."""
    project = bake(tmp_path, job_backend="rq", database="postgresql")
    required = set(re.findall(r"\$\{(\w+):\?", (project / "compose.yaml").read_text()))
    assert required == {
        "DOCKER_API_KEYS",
        "DATABASE_PASSWORD",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
    }

    def names(env: Path) -> set[str]:
        lines = env.read_text().splitlines()
        return {line.split("=")[0] for line in lines if line and not line.startswith("#")}

    baked = (project / ".env").read_text()
    assert names(project / ".env") == required
    (project / ".env").unlink()
    run(["make", ".env"], cwd=project)
    assert names(project / ".env") == required
    assert (project / ".env").read_text() != baked
    assert (project / ".env").stat().st_mode & 0o777 == 0o600
    assert ".env" in (project / ".gitignore").read_text().splitlines()
    assert ".env" in (project / ".dockerignore").read_text().splitlines()
