"""Keep the files that belong to the answers given, remove the rest, print next steps.

Standard library only, and no network, git or installer commands: the bake must work
offline and leave the user's machine as it was. Jinja appears only inside string
literals, so this file is valid Python and its functions are unit-tested.
"""

from __future__ import annotations

import re
import secrets
import shutil
import sys
from pathlib import Path

# Every path that belongs to one answer: it is kept when that answer was given and
# removed otherwise. "{slug}" is the package folder. Every path
# listed must exist in the rendered project: a stale entry stops the bake instead of
# being skipped.
MANIFEST: dict[str, tuple[str, tuple[str, ...]]] = {
    "{slug}/jobs/backend_create_task.py": ("job_backend", ("create_task",)),
    "{slug}/jobs/backend_aiojobs.py": ("job_backend", ("aiojobs",)),
    "{slug}/jobs/backend_rq.py": ("job_backend", ("rq",)),
    "{slug}/jobs/backend_celery.py": ("job_backend", ("celery",)),
    "{slug}/jobs/loop.py": ("job_backend", ("rq", "celery")),
    "{slug}/worker_rq.py": ("job_backend", ("rq",)),
    "{slug}/worker_celery.py": ("job_backend", ("celery",)),
    "tests/redis_server.py": ("job_backend", ("rq", "celery")),
    "tests/test_rq_tools.py": ("job_backend", ("rq",)),
    "tests/test_celery_tools.py": ("job_backend", ("celery",)),
    "tests/test_worker_rq.py": ("job_backend", ("rq",)),
    "tests/test_worker_celery.py": ("job_backend", ("celery",)),
    "tests/worker.py": ("job_backend", ("rq", "celery")),
    "tests/pg_server.py": ("database", ("postgresql",)),
    "tests/test_clock_skew.py": ("database", ("postgresql",)),
    "Dockerfile": ("use_docker", ("y",)),
    ".dockerignore": ("use_docker", ("y",)),
    "compose.yaml": ("use_docker", ("y",)),
    ".github": ("use_github_actions", ("y",)),
}
# The chosen variant lands under one fixed name, so every project imports it alike. A
# variant only some answers have (a worker) moves when it was kept.
MOVES: dict[str, str] = {
    "{slug}/jobs/backend_{job_backend}.py": "{slug}/jobs/backend.py",
    "{slug}/worker_{job_backend}.py": "{slug}/worker.py",
    "tests/test_worker_{job_backend}.py": "tests/test_worker.py",
}


class ManifestError(Exception):
    """The manifest names a path the template does not render."""


def apply_manifest(
    root: Path,
    answers: dict[str, str],
    manifest: dict[str, tuple[str, tuple[str, ...]]] = MANIFEST,
    moves: dict[str, str] = MOVES,
) -> None:
    """Remove the paths whose answer was not chosen, then move chosen variants into place."""
    paths = {entry.format(**answers): owner for entry, owner in manifest.items()}
    missing = sorted(path for path in paths if not (root / path).exists())
    if missing:
        raise ManifestError(f"the template does not render {', '.join(missing)}")
    for path, (question, kept_for) in paths.items():
        if answers[question] not in kept_for:
            target = root / path
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    for source, destination in moves.items():
        variant = root / source.format(**answers)
        if variant.exists():
            variant.rename(root / destination.format(**answers))


# A variable compose.yaml requires (`${NAME:?message}`): a secret of this copy's.
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?")
ENV_HEADER = (
    "# Secrets docker compose gives the containers, made for this copy at bake (README,\n"
    "# Docker). Never commit this file; `make .env` makes a fresh one in a clone.\n"
)


def write_compose_secrets(root: Path) -> list[str]:
    """Give each variable compose.yaml requires a fresh random value, in `.env` (readable
    by its owner only); return their names. A value written in the template would be
    every user's."""
    compose = root / "compose.yaml"
    if not compose.exists():
        return []
    names = sorted(set(REQUIRED_VARIABLE.findall(compose.read_text())))
    env = root / ".env"
    env.touch(mode=0o600)
    env.write_text(ENV_HEADER + "".join(f"{name}={secrets.token_hex(32)}\n" for name in names))
    return names


def next_steps(answers: dict[str, str]) -> str:
    """The commands that take a fresh project to a running service."""
    lines = [
        f"Created {answers['slug']}. Next:",
        f"  cd {answers['slug']}",
    ]
    if answers["database"] == "postgresql":
        lines.append("  export DATABASE_URL=postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB")
    if answers["job_backend"] in ("rq", "celery"):
        lines.append("  export REDIS_URL=redis://HOST:6379/0")
        lines.append("  make worker     # in a second terminal: runs the job worker")
    lines.append("  make run        # installs, migrates, serves on http://127.0.0.1:8000")
    lines.append("  make test       # runs the project's tests")
    return "\n".join(lines)


def main() -> int:
    answers = {
        "slug": "{{ cookiecutter.project_slug }}",
        "job_backend": "{{ cookiecutter.job_backend }}",
        "database": "{{ cookiecutter.database }}",
        "use_docker": "{{ cookiecutter.use_docker }}",
        "use_github_actions": "{{ cookiecutter.use_github_actions }}",
    }
    try:
        apply_manifest(Path.cwd(), answers)
    except ManifestError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    write_compose_secrets(Path.cwd())
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
