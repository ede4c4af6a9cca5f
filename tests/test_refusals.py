"""Bad answers stop the bake with one clear line and leave no folder behind."""

from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException

from tests.conftest import bake

REFUSED = {
    "slug-with-dash": ({"project_slug": "my-service"}, "not a lowercase Python identifier"),
    "slug-uppercase": ({"project_slug": "MyService"}, "not a lowercase Python identifier"),
    "slug-leading-digit": ({"project_slug": "1service"}, "not a lowercase Python identifier"),
    "slug-keyword": ({"project_slug": "import"}, "keyword"),
    "slug-shadows-fastapi": ({"project_slug": "fastapi"}, "shadow"),
    "slug-shadows-rq": ({"project_slug": "rq"}, "shadow"),
    "slug-shadows-redis": ({"project_slug": "redis"}, "shadow"),
    "slug-shadows-celery": ({"project_slug": "celery"}, "shadow"),
    "slug-shadows-aiojobs": ({"project_slug": "aiojobs"}, "shadow"),
    "slug-shadows-asyncio": ({"project_slug": "asyncio"}, "shadow"),
    "slug-shadows-test": ({"project_slug": "test"}, "shadow"),
    "slug-too-long": ({"project_slug": "s" * 31}, "longer than 30"),
    "name-with-quote": ({"project_name": 'The "best" service'}, "double quote"),
    "name-derives-keyword": ({"project_name": "Class"}, "keyword"),
}


@pytest.mark.parametrize(("answers", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_answer_is_refused_and_leaves_no_folder(
    answers: dict[str, str], reason: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, **answers)
    assert list(tmp_path.iterdir()) == []
    ours = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    assert len(ours) == 1, ours
    assert reason in ours[0], ours


def test_a_choice_outside_the_list_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dramatiq"):
        bake(tmp_path, job_backend="dramatiq")
    assert list(tmp_path.iterdir()) == []
