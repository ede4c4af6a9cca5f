"""How refusals and outages are answered: each with its status and a one-line detail;
an invalid request with 422 and the list of what is wrong, as FastAPI answers it."""

import logging
import re

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from {{ cookiecutter.project_slug }}.db import database_unavailable
from {{ cookiecutter.project_slug }}.jobs.errors import (
    JobNotFound,
    JobStateConflict,
    JobsUnavailable,
)

logger = logging.getLogger(__name__)

# How long a client is asked to wait when the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5


def invalid(loc: tuple[str, ...], msg: str, kind: str = "value_error") -> RequestValidationError:
    """A refusal found by a route itself, answered like those pydantic finds."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg}])


def allowed_methods(request: Request) -> str | None:
    """The methods the schema documents on the request's path; None if it has no such path."""
    for path, operations in request.app.openapi()["paths"].items():
        # Each `{parameter}` in it stands for one segment.
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^}]+\}", path))
        if re.fullmatch(pattern, request.url.path):
            return ", ".join(sorted(method.upper() for method in operations))
    return None


async def http_error(request: Request, error: Exception) -> Response:
    """FastAPI's answer, except where it differs from the schema. A body it cannot decode
    at all (not UTF-8, nested too deep) gets 400, which no route documents: it is malformed
    JSON, answered as the rest of it is. A 405 names in Allow the methods of one route only
    (POST for `/documents`, that also takes GET): this one names all the path takes."""
    assert isinstance(error, HTTPException)
    cause = error.__cause__
    if error.status_code == status.HTTP_400_BAD_REQUEST and isinstance(
        cause, ValueError | RecursionError
    ):
        refusal = invalid(("body",), f"JSON decode error: {cause}", "json_invalid")
        return await request_validation_exception_handler(request, refusal)
    if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED and (
        allowed := allowed_methods(request)
    ):
        error = HTTPException(error.status_code, headers={"Allow": allowed})
    return await http_exception_handler(request, error)


async def database_unavailable_answer(request: Request, error: Exception) -> JSONResponse:
    """503 for a request that lost the database (down, restarting, unreachable, full):
    the client may try again, nothing it sent was half written."""
    if not database_unavailable(error):
        raise error
    logger.warning("answered 503: the database is unavailable (%s)", type(error).__name__)
    return JSONResponse(
        {"detail": "the database is unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def job_not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_404_NOT_FOUND)


async def job_state_conflict(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_409_CONFLICT)


async def jobs_unavailable(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, JobsUnavailable)
    return JSONResponse(
        {"detail": f"not taking jobs now: {error}"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(error.retry_after_seconds)},
    )


def add_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(JobNotFound, job_not_found)
    app.add_exception_handler(JobStateConflict, job_state_conflict)
    app.add_exception_handler(JobsUnavailable, jobs_unavailable)
    app.add_exception_handler(DBAPIError, database_unavailable_answer)
    app.add_exception_handler(OSError, database_unavailable_answer)
