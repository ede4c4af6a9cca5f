"""Shared helpers: bake the template, run tools inside the baked project."""

import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
TOOLS = Path(sys.executable).parent
BACKENDS = ("create_task", "aiojobs", "rq", "celery")
DATABASES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Combination:
    job_backend: str
    database: str
    use_docker: str = "y"
    use_github_actions: str = "y"

    @property
    def id(self) -> str:
        extras = [
            name
            for name, on in (("docker", self.use_docker), ("ci", self.use_github_actions))
            if on == "y"
        ]
        return "-".join([self.job_backend, self.database, *extras])

    def answers(self) -> dict[str, str]:
        return {
            "job_backend": self.job_backend,
            "database": self.database,
            "use_docker": self.use_docker,
            "use_github_actions": self.use_github_actions,
        }


ALL_COMBINATIONS = [
    Combination(backend, database, docker, ci)
    for backend, database, docker, ci in itertools.product(BACKENDS, DATABASES, "yn", "yn")
]
BACKEND_DATABASE_PAIRS = [Combination(b, d) for b, d in itertools.product(BACKENDS, DATABASES)]


def bake(output_dir: Path, **answers: str) -> Path:
    """Render the template without prompts and return the baked project's folder."""
    return Path(
        cookiecutter(
            str(TEMPLATE_DIR), no_input=True, output_dir=str(output_dir), extra_context=answers
        )
    )


def run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> str:
    """Run a command inside the baked project; fail the test with its output if it fails."""
    # As a user would run it: not as a sub-make of the template's own make.
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed in {cwd}:\n{output}"
    return output


def require_binary(name: str) -> str:
    """The path of a binary the test needs; skip without it, except in CI, where it fails."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per test process: the third-party modules every bake imports are
    analysed once, not per bake (13 s each). mypy checks each cached module's hash, so a
    cached result is the one it would reach afresh."""
    return tmp_path_factory.mktemp("mypy-cache")


def load_module(path: Path) -> ModuleType:
    """Import a Python file of the template by its path (hooks, server helpers)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Minutes each takes on 2 cores, roughly: the generated workflow with a baked project's
# whole suite, the benchmark's smoke runs, the multi-host deployments, the containers.
# Started first (pytest.ini hands out one test at a time), they run side by side, the many
# short ones fill in around them, and the run ends soon after the last of them.
LONGEST_FIRST = ("test_workflow_run.py", "test_bench.py", "test_hosts.py", "test_containers.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file stays


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pytest.ini): one test process more than there are cores. The tests wait
    on servers and subprocesses for much of their time (on 2 cores the CPUs were busy for
    about 55 % of a run of 2 processes), and a third fills that time: 674 s -> 588 s."""
    return (os.cpu_count() or 1) + 1
