"""The generated workflow, run as GitHub's runner runs it, on each backend x database: the
bake exactly as baked, pushed to a fresh repository and checked out; each `run:` step of
the `check` job read from the YAML and run in order, with the workflow's environment and
`CI=true`, by bash as GitHub runs it, as the unprivileged user `runner` with passwordless
sudo, on a runner that has only what GitHub's image has (tests/podman.py's ubuntu-latest:
no PostgreSQL, Redis or libfaketime until a step installs them). Then a new owner's path:
the README's steps for adding a resource, and lint, the migrations and the tests stay green.

Where this differs from GitHub, on purpose:
- the runner is Debian bookworm in a container (privileged, on this machine's network),
  not Ubuntu in a VM, so its Python is 3.11: one leg of the matrix runs, and uv finds its
  Python on the runner rather than downloading one (UV_PYTHON_DOWNLOADS=never);
- `actions/checkout` is a `git clone` of the pushed repository; `astral-sh/setup-uv` is
  this machine's uv on PATH, its cache kept between runs as setup-uv keeps it;
- `playwright install --with-deps chromium` downloads a browser, which these machines
  cannot: the runner's own Chromium stands in (GitHub's image has one too);
- apt's downloads, and mypy's cache, are kept between runs, and one apt step runs at a
  time on this machine;
- the machine's CA bundle is the runner's: its egress inspects TLS.
"""

import contextlib
import fcntl
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import podman
from tests.compose_stack import CA_BUNDLE
from tests.conftest import (
    BACKEND_DATABASE_PAIRS,
    PROJECT_TEMPLATE,
    Combination,
    bake,
    load_module,
    require_binary,
    run,
)

RUNNER_UID = 1001  # GitHub's `runner`, and the stand-in's
HOME = "/home/runner"
UV = "/opt/hostedtoolcache/uv"
# GitHub's runner environment, the parts the steps use.
RUNNER_ENV = {
    "HOME": HOME,
    "PATH": f"{UV}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "CI": "true",
    "GITHUB_ACTIONS": "true",
    "RUNNER_OS": "Linux",
    "LANG": "C.UTF-8",
    "UV_PYTHON_DOWNLOADS": "never",
    # This machine's egress inspects TLS: uv trusts the CA bundle mounted below.
    "UV_SYSTEM_CERTS": "true",
    # mypy's cache of the libraries every bake imports, kept between runs as a cache
    # action would keep it (mypy checks each entry against its source).
    "MYPY_CACHE_DIR": f"{HOME}/.cache/mypy",
}
PYTHON = "3.11"
# The README's section on adding a resource: its steps are what this test does.
RESOURCE_SECTION = "### Adding a resource"
BLOCK = re.compile(r"^```(python|diff|sh)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# What the README's last command, `make test`, runs here: the tests the new resource
# touches (the whole suite ran on the bake just before, in the workflow's step).
EXTENDED_TESTS = "tests/test_invoices.py tests/test_migrations.py"


class Runner:
    """A runner container, with the pushed repository checked out in its workspace."""

    def __init__(self, name: str, workspace: Path, uv: str, project: str) -> None:
        self.name, self.workspace = name, workspace
        self.workdir = f"{HOME}/work/{workspace.name}/{workspace.name}"
        cache = podman.STORE / "runner-cache"
        # mypy's cache is the project's own, as a cache action keys it by repository:
        # bakes of other backends hold other modules under the same names.
        mypy_cache = cache / "mypy" / project
        for folder in (cache / "uv", mypy_cache, cache / "apt-archives", cache / "apt-lists"):
            (folder / "partial").mkdir(parents=True, exist_ok=True)
        for folder in (cache / "uv", mypy_cache):
            os.chown(folder, RUNNER_UID, RUNNER_UID)
        podman.podman("rm", "--force", "--ignore", name)
        podman.podman(
            "run",
            "--detach",
            f"--name={name}",
            *podman.ULIMITS,
            "--privileged",  # sudo is root on GitHub's VMs: mounts included
            "--network=host",
            "--shm-size=1g",
            f"--volume={workspace}:{self.workdir}",
            f"--volume={uv}:{UV}/uv:ro",
            f"--volume={cache / 'uv'}:{HOME}/.cache/uv",
            f"--volume={mypy_cache}:{HOME}/.cache/mypy",
            f"--volume={cache / 'apt-archives'}:/var/cache/apt/archives",
            f"--volume={cache / 'apt-lists'}:/var/lib/apt/lists",
            f"--volume={CA_BUNDLE}:{CA_BUNDLE}:ro",
            podman.RUNNER,
            "sleep",
            "infinity",
        )

    def run(self, script: str, env: dict[str, str], timeout: float = 1800) -> tuple[int, str]:
        """A step's script, as GitHub runs one: `bash --noprofile --norc -eo pipefail`."""
        command = ["exec", "--user=runner", f"--workdir={self.workdir}"]
        command += [f"--env={key}={value}" for key, value in env.items()]
        command += [self.name, "bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script]
        with apt_lock() if "apt-get" in script else contextlib.nullcontext():
            result = subprocess.run(
                ["podman", *podman.GLOBAL_FLAGS, *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        return result.returncode, result.stdout

    def remove(self) -> None:
        podman.podman("rm", "--force", "--time=0", self.name, check=False)


@contextlib.contextmanager
def apt_lock() -> Iterator[None]:
    """apt's cache is shared by the runners of this machine: one apt step at a time."""
    with (podman.STORE / "apt.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def push_and_check_out(project: Path, workspace: Path) -> None:
    """The bake as its user pushes it (what .gitignore leaves out stays out, .env among
    it), then checked out, as actions/checkout does, owned by `runner`."""
    env = {
        "GIT_AUTHOR_NAME": "A user",
        "GIT_AUTHOR_EMAIL": "user@example.com",
        "GIT_COMMITTER_NAME": "A user",
        "GIT_COMMITTER_EMAIL": "user@example.com",
    }
    run(["git", "init", "--quiet", "--initial-branch=main"], cwd=project)
    run(["git", "add", "--all"], cwd=project)
    run(["git", "commit", "--quiet", "-m", "Baked"], cwd=project, env=env)
    run(["git", "clone", "--quiet", str(project), str(workspace)], cwd=project.parent)
    subprocess.run(["chown", "-R", f"{RUNNER_UID}:{RUNNER_UID}", str(workspace)], check=True)


def run_the_check_job(runner: Runner, workflow: dict[str, Any]) -> list[tuple[str, float]]:
    """Each step of the `check` job, in order; the name and time of each. Fails with the
    output of the first step that fails."""
    job = workflow["jobs"]["check"]
    env = {**RUNNER_ENV}
    for key, value in (job.get("env") or {}).items():
        env[key] = str(value).replace("${{ matrix.python-version }}", PYTHON)
    times = []
    for step in job["steps"]:
        name = step.get("name") or step.get("uses", "")
        if "uses" in step:
            assert step["uses"].split("@")[0] in ("actions/checkout", "astral-sh/setup-uv")
            continue  # done above: the checkout, and uv on PATH
        if "playwright install" in step["run"]:
            continue  # the runner's own Chromium stands in (see above)
        started = time.monotonic()
        code, output = runner.run(step["run"], {**env, **(step.get("env") or {})})
        times.append((name, round(time.monotonic() - started, 1)))
        assert code == 0, f"step {name!r} failed ({code}):\n{output[-8000:]}"
    return times


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database the README's steps migrate, as a new owner has one."""
    combination: Combination = request.getfixturevalue("combination")
    if combination.database == "sqlite":
        yield "sqlite+aiosqlite:///./job_service.db"
        return
    require_binary("setpriv")
    # The baked projects' own throwaway-server helper, as their tests use it.
    pg_server = load_module(PROJECT_TEMPLATE / "tests" / "pg_server.py")
    with pg_server.postgres_server() as url:
        yield url


@pytest.mark.parametrize("combination", BACKEND_DATABASE_PAIRS, ids=lambda c: c.id)
def test_the_workflow_passes_as_pushed_and_the_readme_extends_the_project(
    combination: Combination, database_url: str, tmp_path: Path
) -> None:
    podman.require_podman()
    uv = require_binary("uv")
    podman.ensure(podman.RUNNER)
    project = bake(tmp_path / "bake", **combination.answers())
    assert not (project / "uv.lock").exists(), "a fresh bake has no lock"
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    workspace = tmp_path / project.name
    push_and_check_out(project, workspace)
    assert not (workspace / ".env").exists(), ".env is never pushed"

    runner = Runner(f"runner{os.getpid()}", workspace, uv, combination.id)
    try:
        times = run_the_check_job(runner, workflow)
        extended = follow_the_readme(runner, database_url)
    finally:
        runner.remove()
    print(f"{combination.id}: steps {times}; the README's steps {extended} s")


def follow_the_readme(runner: Runner, database_url: str) -> float:
    """The README's file changes and commands, as written, in the runner's checkout."""
    started = time.monotonic()
    project = runner.workspace
    # As the README says: inside the virtual environment, on the database a user has.
    env = {
        **RUNNER_ENV,
        "PATH": f"{runner.workdir}/.venv/bin:{RUNNER_ENV['PATH']}",
        "DATABASE_URL": database_url,
        "PYTEST_ADDOPTS": EXTENDED_TESTS,
    }
    code, output = runner.run("alembic upgrade head", env)
    assert code == 0, output
    readme = (project / "README.md").read_text()
    start = readme.index(RESOURCE_SECTION)
    section = readme[start : readme.index("\n## ", start)].split("\n### ")[0]
    commands: list[str] = []
    for kind, body in BLOCK.findall(section):
        if kind == "sh":
            commands += body.splitlines()
        elif kind == "diff":
            (project / "readme.patch").write_text(body)
        else:
            first, code = body.split("\n", 1)
            match = re.fullmatch(r"# (\S+)( \(append\))?", first)
            assert match, f"a Python block of {RESOURCE_SECTION!r} names no file: {first!r}"
            path = project / match[1]
            assert path.exists() == bool(match[2]), f"{path}: appended only if it exists"
            with path.open("a") as file:
                file.write(code)
    subprocess.run(["chown", "-R", f"{RUNNER_UID}:{RUNNER_UID}", str(project)], check=True)
    code, output = runner.run("git apply --verbose readme.patch && rm readme.patch", RUNNER_ENV)
    assert code == 0, output
    assert commands[-1] == "make test", commands
    outputs = []
    for command in commands:
        code, output = runner.run(command, env)
        assert code == 0, f"{command}:\n{output[-8000:]}"
        outputs.append(output)
    assert len(list((project / "migrations" / "versions").glob("*_add_invoices.py"))) == 1
    code, output = runner.run("alembic check", env)
    assert "No new upgrade operations detected" in output, output
    summary = [line for line in outputs[-1].splitlines() if re.search(r"\d+ (passed|failed)", line)]
    assert re.search(r"\d+ passed", summary[-1]), outputs[-1]
    assert "skipped" not in summary[-1], outputs[-1]
    assert "failed" not in summary[-1], outputs[-1]
    assert "tests/test_invoices.py ." in outputs[-1], outputs[-1]
    return round(time.monotonic() - started, 1)


def test_a_workflow_missing_an_install_step_fails_as_it_would_on_github(
    tmp_path: Path,
) -> None:
    """The runner has only what GitHub's has: without the step that installs the servers,
    the first step that needs one fails, as on a first push."""
    podman.require_podman()
    uv = require_binary("uv")
    podman.ensure(podman.RUNNER)
    project = bake(tmp_path / "bake", job_backend="rq", database="postgresql")
    path = project / ".github" / "workflows" / "ci.yml"
    workflow = yaml.safe_load(path.read_text())
    steps = workflow["jobs"]["check"]["steps"]
    (install,) = [step for step in steps if "apt-get install" in step.get("run", "")]
    steps.remove(install)
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    workspace = tmp_path / project.name
    push_and_check_out(project, workspace)
    runner = Runner(f"runner{os.getpid()}", workspace, uv, "without-apt-step")
    try:
        with pytest.raises(AssertionError) as failed:
            run_the_check_job(runner, workflow)
    finally:
        runner.remove()
    assert "step 'Migrations match the models' failed" in str(failed.value)
    assert "PostgreSQL server binaries (initdb, postgres) are not installed" in str(failed.value)
