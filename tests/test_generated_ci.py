"""The generated CI workflow and Dockerfile pass the checks their users run, offline.

No GitHub runner or Docker engine here, so the files are checked as files: zizmor (the
workflow's security: pins, permissions, credentials), check-jsonschema against GitHub's
workflow and Dependabot schemas (vendored in the package, no network), hadolint (the
Dockerfile), and the pins' own rules below. Each check is shown to fail on a spoiled file.
"""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import BACKEND_DATABASE_PAIRS, TOOLS, Combination, bake, run

# The release each action is pinned to, and the oldest major accepted: the current ones when
# written (checkout 5+ and setup-uv 7+ run on Node 24; Node 20 is being removed by GitHub).
CURRENT_MAJORS = {"actions/checkout": 7, "astral-sh/setup-uv": 10}
# `uses: owner/repo@<full commit> # vX.Y.Z`: the commit is what runs, the comment what it is.
PINNED = re.compile(
    r"uses: (?P<action>[\w.-]+/[\w.-]+)@(?P<commit>[0-9a-f]{40}) # v(?P<major>\d+)\.\d+\.\d+$"
)


def pin_errors(workflow: str) -> list[str]:
    """What is wrong with the workflow's `uses:` lines: unpinned, unknown or old actions."""
    errors = []
    for line in workflow.splitlines():
        if "uses:" not in line:
            continue
        used = line.strip().removeprefix("- ")
        pinned = PINNED.fullmatch(used)
        if pinned is None:
            errors.append(f"not pinned to a full commit with its release: {used}")
        elif pinned["action"] not in CURRENT_MAJORS:
            errors.append(f"no current major known for {pinned['action']}")
        elif int(pinned["major"]) < CURRENT_MAJORS[pinned["action"]]:
            errors.append(f"older than v{CURRENT_MAJORS[pinned['action']]}: {used}")
    return errors


def zizmor(project: Path) -> str:
    # The project's root: zizmor audits its workflows and .github/dependabot.yml.
    return run([str(TOOLS / "zizmor"), "--offline", "--format", "plain", "."], cwd=project)


def validate(schema: str, path: Path) -> str:
    return run(
        [str(TOOLS / "check-jsonschema"), "--builtin-schema", schema, str(path)], path.parent
    )


def hadolint(dockerfile: Path) -> str:
    return run([str(TOOLS / "hadolint"), "--no-color", str(dockerfile)], cwd=dockerfile.parent)


@pytest.mark.parametrize("combination", BACKEND_DATABASE_PAIRS, ids=lambda c: c.id)
def test_the_workflow_and_dockerfile_pass_their_checks(
    combination: Combination, tmp_path: Path
) -> None:
    project = bake(tmp_path, **combination.answers())
    workflows = project / ".github" / "workflows"
    workflow = (workflows / "ci.yml").read_text()

    assert "No findings to report" in zizmor(project)
    validate("vendor.github-workflows", workflows / "ci.yml")
    validate("vendor.dependabot", project / ".github" / "dependabot.yml")
    assert pin_errors(workflow) == []
    # The bits zizmor asks for, as the README promises them.
    parsed = yaml.safe_load(workflow)
    assert parsed["permissions"] == {"contents": "read"}
    (checkout,) = [s for s in parsed["jobs"]["check"]["steps"] if "checkout" in s.get("uses", "")]
    assert checkout["with"]["persist-credentials"] is False
    assert "make install UV_SYNC_FLAGS=--locked" in workflow

    dockerfile = project / "Dockerfile"
    assert hadolint(dockerfile) == ""
    # The lock when there is one, and a build without it too (tests/test_containers.py).
    assert "COPY pyproject.toml uv.lock* ./" in dockerfile.read_text()
    assert "uv sync --locked --no-dev --no-editable" in dockerfile.read_text()


def test_each_check_reports_a_spoiled_file(tmp_path: Path) -> None:
    """Guard against checks that pass because they look at nothing, or at the wrong thing."""
    project = bake(tmp_path, job_backend="rq", database="postgresql")
    workflow_path = project / ".github" / "workflows" / "ci.yml"
    workflow = workflow_path.read_text()

    # zizmor: credentials kept after checkout, default permissions, an action on a tag.
    spoiled = workflow.replace("        with:\n          persist-credentials: false\n", "")
    spoiled = spoiled.replace("permissions:\n  contents: read\n", "")
    spoiled = re.sub(r"setup-uv@[0-9a-f]{40} # (v[\d.]+)", r"setup-uv@\1", spoiled)
    checkouts = workflow.count("persist-credentials: false")
    assert checkouts == 2  # the check job's and the Docker job's
    assert spoiled.count("\n") == workflow.count("\n") - 2 * checkouts - 2
    workflow_path.write_text(spoiled)
    with pytest.raises(AssertionError) as found:
        zizmor(project)
    for audit in ("artipacked", "excessive-permissions", "unpinned-uses"):
        assert audit in str(found.value)

    # The pins: a tag, and a full commit of a retired major.
    assert pin_errors(spoiled) == [
        "not pinned to a full commit with its release: uses: astral-sh/setup-uv@v10.0.1"
    ]
    old = workflow.replace(
        "3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1", "a" * 40 + " # v4.2.2"
    )
    assert pin_errors(old) == [f"older than v7: uses: actions/checkout@{'a' * 40} # v4.2.2"] * 2

    # The schema: a job without `runs-on` (misspelt) is not a GitHub workflow.
    workflow_path.write_text(workflow.replace("    runs-on:", "    run-on:"))
    with pytest.raises(AssertionError, match="runs-on"):
        validate("vendor.github-workflows", workflow_path)

    # hadolint: an untagged base image, pip without pinned versions, a root user by name.
    dockerfile = project / "Dockerfile"
    text = dockerfile.read_text()
    spoiled = text.replace("FROM python:3.12-slim AS build", "FROM python AS build")
    spoiled = spoiled.replace("    uv sync --locked --no-dev --no-editable", "    pip install uv")
    spoiled = spoiled.replace("USER 10001:10001", "USER app")
    assert spoiled.count("\n") == text.count("\n")
    dockerfile.write_text(spoiled)
    with pytest.raises(AssertionError) as found:
        hadolint(dockerfile)
    for rule in ("DL3006", "DL3013", "DL3066"):
        assert rule in str(found.value)
