"""Behind a TLS proxy: uvicorn takes X-Forwarded-Proto and X-Forwarded-For only from the
addresses in FORWARDED_ALLOW_IPS (127.0.0.1 unless set). From a trusted proxy the
dashboard's cookie is marked Secure; from anyone else the headers change nothing."""

from pathlib import Path

import httpx
from pydantic import SecretStr

from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import start_web

KEY = "proxy-key-41d7"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


def sign_in_cookie(settings: Settings, log: Path, trusted: str | None) -> str:
    """The Set-Cookie of a sign-in sent through a proxy at 127.0.0.1."""
    env = {} if trusted is None else {"FORWARDED_ALLOW_IPS": trusted}
    with start_web(settings, log, env=env) as web:
        web.wait_until_up()
        answer = httpx.post(f"{web.url}/dashboard/login", data={"key": KEY}, headers=FORWARDED)
        assert answer.status_code == 303, answer.text
        return answer.headers["set-cookie"]


def test_the_cookie_is_secure_behind_a_trusted_proxy_only(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"api_keys": [SecretStr(KEY)]})
    # uvicorn's default: the proxy on this machine is trusted.
    assert "secure" in sign_in_cookie(settings, tmp_path / "trusted.log", None).lower()
    # A proxy elsewhere is named; a request from 127.0.0.1 is then an untrusted client's.
    untrusted = sign_in_cookie(settings, tmp_path / "untrusted.log", "192.0.2.1")
    assert "secure" not in untrusted.lower()
