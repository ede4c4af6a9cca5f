"""API keys: with `API_KEYS` set, /api/v1 answers only requests that carry one of them,
and /dashboard only browsers signed in with one. Without keys, both answer only requests
that reach the service over loopback (a laptop's `make run`), unless ALLOW_OPEN_API=true."""

import hashlib
import hmac
import ipaddress
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


def require_loopback_unless_open(request: Request) -> None:
    """Without API_KEYS: refuse a request from beyond this machine, unless the operator
    said ALLOW_OPEN_API=true. A container or `--host 0.0.0.0` is not open by accident."""
    if not (request.app.state.settings.allow_open_api or _over_loopback(request)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "API_KEYS is not set, so this service answers only on loopback: "
            "set API_KEYS, or ALLOW_OPEN_API=true to serve everyone who can reach it",
        )


def _over_loopback(request: Request) -> bool:
    """From this machine to a loopback address, and not through a proxy (behind one,
    every client would look local)."""
    server, client, headers = request.scope.get("server"), request.client, request.headers
    if server is None or client is None or "forwarded" in headers or "x-forwarded-for" in headers:
        return False
    return _is_loopback(client.host) and _is_loopback(str(server[0]))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a Unix socket's path, a name
        return False


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> None:
    keys = _keys(request)
    if keys.open:
        require_loopback_unless_open(request)
    elif not keys.allow(key):
        raise _refuse()


async def require_metrics_key(
    request: Request,
    key: Annotated[str | None, Security(API_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> None:
    if not _keys(request).allow(key or (bearer.credentials if bearer else None)):
        raise _refuse()
