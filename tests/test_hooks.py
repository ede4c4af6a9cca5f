"""Unit tests of the hooks' functions, imported from the unrendered hook files."""

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_TEMPLATE, TEMPLATE_DIR, load_module

pre_gen = load_module(TEMPLATE_DIR / "hooks" / "pre_gen_project.py")
post_gen = load_module(TEMPLATE_DIR / "hooks" / "post_gen_project.py")
ANSWERS = {
    "slug": "shop",
    "job_backend": "rq",
    "database": "sqlite",
    "use_docker": "n",
    "use_github_actions": "y",
}


@pytest.mark.parametrize("slug", ["shop", "my_service", "_private", "api2", "a" * 30])
def test_usable_slugs_are_accepted(slug: str) -> None:
    assert pre_gen.slug_error(slug) is None


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("My_Service", "not a lowercase Python identifier"),
        ("my-service", "not a lowercase Python identifier"),
        ("2fast", "not a lowercase Python identifier"),
        ("", "not a lowercase Python identifier"),
        ("class", "keyword"),
        ("fastapi", "shadow"),
        ("rq", "shadow"),
        ("redis", "shadow"),
        ("aiojobs", "shadow"),
        ("asyncio", "shadow"),
        ("json", "shadow"),
        ("test", "shadow"),
        ("tests", "shadow"),
        ("a" * 31, "longer than 30"),
    ],
)
def test_unusable_slugs_are_refused_with_the_reason(slug: str, reason: str) -> None:
    error = pre_gen.slug_error(slug)
    assert error is not None
    assert reason in error
    assert repr(slug) in error


def test_quotes_in_free_text_are_refused() -> None:
    assert pre_gen.text_error({"project_name": 'Say "hi"'}) is not None
    assert pre_gen.text_error({"description": "a\\b"}) is not None
    assert pre_gen.text_error({"project_name": "Café it's <fine> & good"}) is None


def test_an_answer_outside_its_choices_is_refused() -> None:
    answers = {
        "job_backend": "dramatiq",
        "database": "sqlite",
        "use_docker": "y",
        "use_github_actions": "n",
    }
    error = pre_gen.choice_error(answers)
    assert error == "job_backend 'dramatiq' is not one of: create_task, aiojobs, rq, celery."


def make_tree(root: Path, paths: list[str]) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)


def test_manifest_keeps_the_chosen_answers_and_moves_the_backend_into_place(tmp_path: Path) -> None:
    manifest = {
        "{slug}/jobs/backend_create_task.py": ("job_backend", ("create_task",)),
        "{slug}/jobs/backend_rq.py": ("job_backend", ("rq",)),
        "{slug}/worker_rq.py": ("job_backend", ("rq",)),
        "{slug}/worker_celery.py": ("job_backend", ("celery",)),
        "tests/redis_server.py": ("job_backend", ("rq", "celery")),
        "tests/pg_server.py": ("database", ("postgresql",)),
        "Dockerfile": ("use_docker", ("y",)),
        ".github": ("use_github_actions", ("y",)),
    }
    make_tree(
        tmp_path,
        [*(p.format(slug="shop") for p in manifest if p != ".github"), ".github/workflows/ci.yml"],
    )
    post_gen.apply_manifest(tmp_path, ANSWERS, manifest, post_gen.MOVES)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        ".github/workflows/ci.yml",
        "shop/jobs/backend.py",
        "shop/worker.py",
        "tests/redis_server.py",
    ]
    assert (tmp_path / "shop/jobs/backend.py").read_text() == "shop/jobs/backend_rq.py"
    assert (tmp_path / "shop/worker.py").read_text() == "shop/worker_rq.py"


def test_a_backend_without_a_worker_bakes_none(tmp_path: Path) -> None:
    manifest = {
        "{slug}/jobs/backend_create_task.py": ("job_backend", ("create_task",)),
        "{slug}/worker_rq.py": ("job_backend", ("rq",)),
    }
    make_tree(tmp_path, [p.format(slug="shop") for p in manifest])
    answers = {**ANSWERS, "job_backend": "create_task"}
    post_gen.apply_manifest(tmp_path, answers, manifest, post_gen.MOVES)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["shop/jobs/backend.py"]


def test_a_stale_manifest_entry_fails_loudly(tmp_path: Path) -> None:
    manifest = {"Dockerfile": ("use_docker", ("y",)), "compose.yaml": ("use_docker", ("y",))}
    make_tree(tmp_path, ["Dockerfile"])
    with pytest.raises(post_gen.ManifestError, match=r"compose\.yaml"):
        post_gen.apply_manifest(tmp_path, ANSWERS, manifest, {})
    assert (tmp_path / "Dockerfile").exists(), "nothing is removed when the manifest is stale"


def test_every_manifest_entry_names_a_template_path_and_a_real_answer() -> None:
    choices = pre_gen.CHOICES
    for entry, (question, kept_for) in post_gen.MANIFEST.items():
        assert (PROJECT_TEMPLATE / entry.format(slug="{{cookiecutter.project_slug}}")).exists(), (
            entry
        )
        assert set(kept_for) <= set(choices[question]), entry


def test_next_steps_name_the_worker_only_for_rq_and_celery() -> None:
    assert "make worker" in post_gen.next_steps(ANSWERS)
    assert "make worker" in post_gen.next_steps({**ANSWERS, "job_backend": "celery"})
    assert "make worker" not in post_gen.next_steps({**ANSWERS, "job_backend": "aiojobs"})
    assert "DATABASE_URL" in post_gen.next_steps({**ANSWERS, "database": "postgresql"})


def test_each_secret_compose_requires_is_made_fresh_and_private(tmp_path: Path) -> None:
    compose = "a: ${ONE:?made at bake}\nb: ${TWO:?x} ${ONE:?again}\nc: ${OPTIONAL:-default}\n"
    values: list[str] = []
    for bake in ("first", "second"):
        root = tmp_path / bake
        root.mkdir()
        (root / "compose.yaml").write_text(compose)
        assert post_gen.write_compose_secrets(root) == ["ONE", "TWO"]
        env = root / ".env"
        assert env.stat().st_mode & 0o777 == 0o600
        lines = [line for line in env.read_text().splitlines() if not line.startswith("#")]
        secrets = dict(line.split("=", 1) for line in lines)
        assert list(secrets) == ["ONE", "TWO"]
        assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in secrets.values())
        values += secrets.values()
    assert len(set(values)) == 4, "every secret, in every bake, is its own"


def test_a_bake_without_compose_gets_no_secrets(tmp_path: Path) -> None:
    assert post_gen.write_compose_secrets(tmp_path) == []
    assert not (tmp_path / ".env").exists()
