"""A baked project's answers replay, and the template's later commits reach it through cruft.

As users bake: from a template in a git repository. That repository is made from this
working tree as it is (uncommitted changes included), committed in a temporary folder; the
tests then commit changes to it, as the template's maintainers would.
"""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_DIR, TOOLS, require_binary

ANSWERS = {"job_backend": "rq", "database": "postgresql", "project_name": "Order Intake"}
SLUG = "order_intake"
# The baked README's command for a project baked with cookiecutter (TEMPLATE, COMMIT: its own).
LINK_COMMAND = (
    "cruft link TEMPLATE --no-input --checkout COMMIT --extra-context \\\n"
    """  "$(python3 -c 'import json; print(json.dumps(json.load(open(".cookiecutter.json"))"""
    """["cookiecutter"]))')\""""
)


def shell(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command with no input (a prompt fails it instead of hanging); its output."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{shlex.join(command)} failed in {cwd}:\n{output}"
    return output


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Git with a fixed identity and no user config; cookiecutter's folders inside tmp_path."""
    require_binary("git")
    config = tmp_path / "cookiecutterrc.yaml"
    config.write_text(
        f"cookiecutters_dir: {tmp_path / 'cookiecutters'}\nreplay_dir: {tmp_path / 'replay'}\n"
    )
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    return {
        **inherited,
        "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}",
        "COOKIECUTTER_CONFIG": str(config),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Template Tests",
        "GIT_AUTHOR_EMAIL": "tests@example.com",
        "GIT_COMMITTER_NAME": "Template Tests",
        "GIT_COMMITTER_EMAIL": "tests@example.com",
    }


@pytest.fixture
def template(tmp_path: Path, env: dict[str, str]) -> Path:
    """A git repository of the template's working tree, one commit."""
    listed = shell(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], TEMPLATE_DIR, env
    )
    repo = tmp_path / "template"
    for name in filter(None, listed.split("\0")):
        source = TEMPLATE_DIR / name
        if source.is_file():  # not a file deleted from the working tree but still indexed
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(source.read_bytes())
            (repo / name).chmod(source.stat().st_mode)
    shell(["git", "init", "--quiet", "--initial-branch=main"], repo, env)
    commit(repo, env, "The template as it is in the working tree")
    return repo


def commit(repo: Path, env: dict[str, str], message: str) -> str:
    shell(["git", "add", "--all"], repo, env)
    shell(["git", "commit", "--quiet", "--message", message], repo, env)
    return shell(["git", "rev-parse", "HEAD"], repo, env).strip()


def tree(project: Path) -> dict[str, bytes]:
    """Every file's bytes; of .env, the secrets made at bake, only the names."""
    files = {
        str(path.relative_to(project)): path.read_bytes()
        for path in sorted(project.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }
    files[".env"] = re.sub(rb"=.*", b"=", files[".env"])
    return files


def cookiecutter_bake(template: Path, output: Path, env: dict[str, str], **answers: str) -> Path:
    args = [f"{key}={value}" for key, value in answers.items()]
    shell(["cookiecutter", "--no-input", "-o", str(output), str(template), *args], output, env)
    (project,) = output.iterdir()
    return project


def git_project(project: Path, env: dict[str, str]) -> None:
    """The baked project as its user keeps it: a git repository with everything committed."""
    shell(["git", "init", "--quiet", "--initial-branch=main"], project, env)
    commit(project, env, "Baked")


def test_replaying_the_answers_bakes_the_same_project(
    template: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "first").mkdir()
    first = cookiecutter_bake(template, tmp_path / "first", env, **ANSWERS)
    replay_file = first / ".cookiecutter.json"
    answers = json.loads(replay_file.read_text())["cookiecutter"]
    assert {key: answers[key] for key in ANSWERS} == ANSWERS
    assert answers["project_slug"] == SLUG
    # The answers only, and where they were given: the template's settings come from it.
    assert [key for key in answers if key.startswith("_")] == ["_template"]

    (tmp_path / "second").mkdir()
    command = ["cookiecutter", "--replay-file", str(replay_file), "-o", "second", str(template)]
    shell(command, tmp_path, env)
    assert tree(tmp_path / "second" / SLUG) == tree(first)


def test_cruft_create_check_and_update(template: Path, tmp_path: Path, env: dict[str, str]) -> None:
    extra = json.dumps(ANSWERS)
    create = ["cruft", "create", str(template), "--no-input", "--extra-context", extra]
    shell([*create, "--output-dir", str(tmp_path / "out")], tmp_path, env)
    project = tmp_path / "out" / SLUG
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == shell(["git", "rev-parse", "HEAD"], template, env).strip()
    git_project(project, env)
    assert "up to date" in shell(["cruft", "check"], project, env)
    shell(["cruft", "diff", "--exit-code"], project, env)
    # The user's own work, which an update keeps.
    with (project / "README.md").open("a") as readme:
        readme.write("\nOur deployment notes.\n")
    commit(project, env, "Notes")

    # The template moves on: a changed file and a new one that depends on the answers.
    baked = template / "{{cookiecutter.project_slug}}"
    with (baked / ".env.example").open("a") as env_example:
        env_example.write("# From a later template commit.\nLATER_SETTING=1\n")
    (baked / "NOTES.md").write_text("Baked for {{ cookiecutter.job_backend }}.\n")
    later = commit(template, env, "A later template change")
    with pytest.raises(AssertionError, match="out of date"):
        shell(["cruft", "check"], project, env)

    shell(["cruft", "update", "--skip-apply-ask"], project, env)
    assert (project / ".env.example").read_text().endswith("LATER_SETTING=1\n")
    assert (project / "NOTES.md").read_text() == "Baked for rq.\n"
    assert (project / "README.md").read_text().endswith("Our deployment notes.\n")
    assert (project / f"{SLUG}/worker.py").is_file(), "the answers are kept"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == later
    assert "up to date" in shell(["cruft", "check"], project, env)


def test_a_cookiecutter_bake_links_to_its_template_as_the_readme_says(
    template: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "out").mkdir()
    answers = {**ANSWERS, "job_backend": "aiojobs", "database": "sqlite", "use_docker": "n"}
    project = cookiecutter_bake(template, tmp_path / "out", env, **answers)
    assert LINK_COMMAND in (project / "README.md").read_text()
    git_project(project, env)
    baked_from = shell(["git", "rev-parse", "HEAD"], template, env).strip()
    # The template moves on before the project is linked: it links to where it was baked from.
    (template / "later.txt").write_text("A later commit.\n")
    commit(template, env, "Later")

    link = LINK_COMMAND.replace("TEMPLATE", shlex.quote(str(template)))
    shell(["sh", "-c", link.replace("COMMIT", baked_from)], project, env)
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == baked_from
    assert state["context"]["cookiecutter"]["job_backend"] == "aiojobs"
    # Linked with the answers it was baked with: the template renders it exactly.
    shell(["cruft", "diff", "--exit-code"], project, env)
    with pytest.raises(AssertionError, match="out of date"):
        shell(["cruft", "check"], project, env)
