"""The `Idempotency-Key` header: the same key on the same endpoint gives the same resource
and job, however often, and however many requests race with it."""

from typing import Annotated

from fastapi import Header

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat a request safely: the same key returns what the first one made.",
    ),
]


def scoped(endpoint: str, key: str | None) -> str | None:
    """The job table's key for a client's key: one endpoint's keys never meet another's."""
    return None if key is None else f"{endpoint}:{key}"
