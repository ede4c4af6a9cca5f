"""Refuse answers that would bake a broken project, before anything is written.

Standard library only: this runs in the user's cookiecutter environment.
"""

from __future__ import annotations

import keyword
import re
import sys
from urllib.parse import unquote

# Top-level modules a baked service or its tests import; a package of the same
# name would shadow them.
IMPORTED_MODULES = frozenset(
    {
        "aiojobs",
        "aiosqlite",
        "alembic",
        "anyio",
        "asyncpg",
        "celery",
        "fastapi",
        "flower",
        "httpx",
        "kombu",
        "migrations",
        "mypy",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "prometheus_client",
        "redis",
        "rq",
        "ruff",
        "sqlalchemy",
        "sqlmodel",
        "starlette",
        "structlog",
        "tests",
        "uvicorn",
    }
)
SLUG_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
# Long enough for any sensible package name, short enough that generated lines that
# carry it stay within the line-length limit.
MAX_SLUG_LENGTH = 30
CHOICES = {
    "job_backend": ("create_task", "aiojobs", "rq", "celery"),
    "database": ("sqlite", "postgresql"),
    "use_docker": ("y", "n"),
    "use_github_actions": ("y", "n"),
}


def slug_error(slug: str) -> str | None:
    """Say what is wrong with a project slug, or None when it is usable."""
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            f"project_slug {slug!r} is not a lowercase Python identifier: "
            "use lowercase letters, digits and underscores, not starting with a digit."
        )
    if len(slug) > MAX_SLUG_LENGTH:
        return f"project_slug {slug!r} is longer than {MAX_SLUG_LENGTH} characters: shorten it."
    if keyword.iskeyword(slug):
        return f"project_slug {slug!r} is a Python keyword: choose another name."
    if slug in sys.stdlib_module_names or slug in IMPORTED_MODULES or slug == "test":
        return (
            f"project_slug {slug!r} would shadow the module of that name the service "
            "imports: choose another name."
        )
    return None


def text_error(answers: dict[str, str]) -> str | None:
    """Refuse quotes and backslashes in free-text answers: they end up inside string literals."""
    for name, value in answers.items():
        if '"' in value or "\\" in value:
            return f"{name} {value!r} contains a double quote or a backslash: remove it."
    return None


def choice_error(answers: dict[str, str]) -> str | None:
    """Say which answer is outside its allowed choices (e.g. in an edited replay file)."""
    for name, allowed in CHOICES.items():
        if answers[name] not in allowed:
            return f"{name} {answers[name]!r} is not one of: {', '.join(allowed)}."
    return None


def main() -> int:
    answers = {
        "job_backend": "{{ cookiecutter.job_backend }}",
        "database": "{{ cookiecutter.database }}",
        "use_docker": "{{ cookiecutter.use_docker }}",
        "use_github_actions": "{{ cookiecutter.use_github_actions }}",
    }
    # URL-encoded, so that any text, quotes included, renders into a valid literal here.
    texts = {
        "project_name": unquote("{{ cookiecutter.project_name | urlencode }}"),
        "description": unquote("{{ cookiecutter.description | urlencode }}"),
        "author_name": unquote("{{ cookiecutter.author_name | urlencode }}"),
        "author_email": unquote("{{ cookiecutter.author_email | urlencode }}"),
    }
    error = (
        slug_error(unquote("{{ cookiecutter.project_slug | urlencode }}"))
        or text_error(texts)
        or choice_error(answers)
    )
    if error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
