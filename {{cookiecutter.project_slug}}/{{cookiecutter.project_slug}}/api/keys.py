"""API keys: with `API_KEYS` set, /api/v1 answers only requests that carry one of them,
and /dashboard only browsers signed in with one."""

import hashlib
import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)
# Prometheus sends credentials as `Authorization: Bearer`; /metrics takes that too.
BEARER = HTTPBearer(auto_error=False)


# How long the dashboard's sign-in lasts.
SESSION_SECONDS = 12 * 3600


class ApiKeys:
    def __init__(self, keys: list[SecretStr]) -> None:
        # Compared as digests: all the same length, so the comparison tells nothing of a
        # key's length either.
        self._digests = [_digest(key.get_secret_value()) for key in keys]
        # The dashboard's session cookie is signed with the keys themselves: every process
        # given the same API_KEYS accepts it, and changing the keys signs everyone out.
        self._sessions = URLSafeTimedSerializer(b"".join(self._digests), salt="dashboard")

    @property
    def open(self) -> bool:
        """No keys set: everything is open to anyone who can reach the service."""
        return not self._digests

    def new_session(self) -> str:
        """A signed session for the dashboard's cookie, to give once a key was allowed."""
        return self._sessions.dumps("operator")

    def allow_session(self, session: str | None) -> bool:
        if session is None:
            return False
        try:
            self._sessions.loads(session, max_age=SESSION_SECONDS)
        except BadSignature:  # also when expired
            return False
        return True

    def allow(self, presented: str | None) -> bool:
        if presented is None:
            return False
        digest = _digest(presented)
        # Every key is compared, in constant time: the time taken tells nothing of which
        # key came close.
        matches = [hmac.compare_digest(digest, key) for key in self._digests]
        return any(matches)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _refuse() -> HTTPException:
    # The presented key is never echoed, nor logged.
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "a valid API key is required in the X-API-Key header",
        headers={"WWW-Authenticate": "ApiKey"},
    )


def _keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> None:
    if not _keys(request).allow(key):
        raise _refuse()


async def require_metrics_key(
    request: Request,
    key: Annotated[str | None, Security(API_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> None:
    if not _keys(request).allow(key or (bearer.credentials if bearer else None)):
        raise _refuse()
