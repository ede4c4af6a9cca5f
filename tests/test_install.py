"""Each backend x database installs into a fresh virtual environment, migrates and passes its tests."""

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import BACKEND_DATABASE_PAIRS, PROJECT_TEMPLATE, Combination, bake, require_binary, run


def load_server_module(name: str) -> ModuleType:
    """The baked projects' own throwaway-server helper, used here as the baked tests use it."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_TEMPLATE / "tests" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    combination: Combination = request.getfixturevalue("combination")
    if combination.database == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
        return
    require_binary("setpriv")
    pg_server = load_server_module("pg_server")
    if pg_server.find_bindir() is None:
        require_binary("postgres")
    with pg_server.postgres_server() as url:
        yield url


@pytest.mark.parametrize("combination", BACKEND_DATABASE_PAIRS, ids=lambda c: c.id)
def test_combination_installs_migrates_and_passes_its_tests(
    combination: Combination, database_url: str, tmp_path: Path
) -> None:
    require_binary("uv")
    require_binary("make")
    if combination.job_backend == "rq":
        require_binary("redis-server")
    project = bake(tmp_path, **combination.answers())

    # The project's own install step: a fresh .venv, filled by uv from its warm cache.
    run(["make", "install"], cwd=project)
    alembic = str(project / ".venv" / "bin" / "alembic")
    run([alembic, "upgrade", "head"], cwd=project, env={"DATABASE_URL": database_url})
    check = run([alembic, "check"], cwd=project, env={"DATABASE_URL": database_url})
    assert "No new upgrade operations detected" in check

    # CI set: a missing server binary fails the baked tests instead of skipping them.
    output = run(["make", "test"], cwd=project, env={"CI": "true"})
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)][-1]
    assert re.search(r"\d+ passed", summary), summary
    assert "skipped" not in summary and "failed" not in summary, summary
