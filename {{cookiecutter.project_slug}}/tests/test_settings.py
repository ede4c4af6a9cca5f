import json
import logging

import pytest
from pydantic import ValidationError

from {{ cookiecutter.project_slug }}.observability import configure_logging
from {{ cookiecutter.project_slug }}.settings import Settings


def test_settings_come_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_DIR", "/srv/files")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("JOB_SHUTDOWN_GRACE_SECONDS", "5")
    settings = Settings()
    assert str(settings.storage_dir) == "/srv/files"
    assert settings.log_format == "json"
    assert settings.job_shutdown_grace_seconds == 5


def test_an_invalid_setting_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("test").info("hello %s", "world")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["logger"] == "test"
