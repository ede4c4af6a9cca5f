"""The answers besides success that routes document: a client generated from
`/openapi.json` then knows every status it can get, and the body that comes with it."""

from typing import Any

from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]


class Detail(BaseModel):
    """Why the request was refused, or cannot be served now."""

    detail: str


def refusal(description: str) -> dict[str, Any]:
    return {"model": Detail, "description": description}


def header(description: str, type_: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": type_}}


# Any route that reads the database or starts a job may answer this.
UNAVAILABLE: Responses = {
    503: {
        **refusal("The database is unavailable, or no jobs are taken now: try again later"),
        "headers": {"Retry-After": header("Seconds to wait before trying again", "integer")},
    }
}
# Every route behind the API key guard, to a request without a valid key.
UNAUTHORIZED: Responses = {
    401: {
        **refusal("No valid API key in the X-API-Key header"),
        "headers": {"WWW-Authenticate": header("The scheme to authenticate with", "string")},
    }
}

# Without API_KEYS, to a request from beyond loopback, unless ALLOW_OPEN_API=true.
BEYOND_LOOPBACK: Responses = {
    403: refusal("API_KEYS is not set, and the request did not come over loopback"),
}
