"""Constraints shared by request fields: each takes what the schema shows, no more, no less."""

import re
from datetime import date
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from fastapi import Query, Request
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from {{ cookiecutter.project_slug }}.api.errors import invalid

# Some databases cannot store NUL characters in text: refusing them answers 422, not 500.
NO_NUL = r"^[^\x00]*$"
# Also no line break of any kind Python's email headers refuse (`str.splitlines`): the
# value goes into a single header line.
ONE_LINE = r"^[^\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*$"
# Past this, an offset is a mistake; it also stays within every database's integers.
MAX_OFFSET = 2**31 - 1

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def _date_string(value: object) -> object:
    # Pydantic would also take a number (of seconds since 1970) or a date-time at midnight.
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return value
    raise PydanticCustomError("date_type", "Input should be a date as YYYY-MM-DD")


def _whole_number(value: object) -> object:
    # Pydantic would also read "+1", " 1", "1_000" and "1.0" from a query string.
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value):
        raise PydanticCustomError("int_parsing", "Input should be a whole number in digits")
    return value


def _email_address(value: str) -> str:
    # As pydantic's EmailStr, but with the domains RFC 6761 keeps for testing (`*.test`).
    try:
        address = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as error:
        raise PydanticCustomError(
            "value_error", "value is not a valid email address: {reason}", {"reason": str(error)}
        ) from None
    return address.normalized


# A date in JSON: the string "YYYY-MM-DD" (`format: date`).
IsoDate = Annotated[date, BeforeValidator(_date_string)]
EmailAddress = Annotated[
    str, AfterValidator(_email_address), WithJsonSchema({"type": "string", "format": "email"})
]
# A page of a list, in the query string: whole numbers in digits, as the schema's `integer`.
# The bounds come first, or the schema would show them under pydantic's names, not its own.
Limit = Annotated[int, Query(ge=1, le=100), BeforeValidator(_whole_number)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET), BeforeValidator(_whole_number)]


def one_value_each(request: Request) -> None:
    """Refuses a query parameter of the route given more than once: FastAPI would take
    the last value, and which one the client meant is a guess."""
    for parameter in request.scope["route"].dependant.query_params:
        if len(values := request.query_params.getlist(parameter.alias)) > 1:
            message = f"Input should be given once, not {len(values)} times"
            raise invalid(("query", parameter.alias), message)
