import pytest
from pydantic import ValidationError

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


def test_api_keys_are_comma_separated_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " key-one-secret , key-two-secret,")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == [
        "key-one-secret",
        "key-two-secret",
    ]
    assert "secret" not in repr(settings)
    assert "secret" not in str(settings.model_dump())


def test_keys_for_metrics_need_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_REQUIRE_API_KEY", "true")
    with pytest.raises(ValidationError, match="needs API_KEYS"):
        Settings()


def test_a_cleanup_schedule_that_is_no_cron_expression_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLEANUP_SCHEDULE", "every hour")
    with pytest.raises(ValidationError, match="cleanup_schedule"):
        Settings()
    monkeypatch.setenv("CLEANUP_SCHEDULE", "")
    assert Settings().cleanup_schedule == ""
