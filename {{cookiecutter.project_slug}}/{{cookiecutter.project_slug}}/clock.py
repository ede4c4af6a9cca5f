"""The database's clock: the one clock that decides who runs a job, and when.

Every process on every host compares run-after times, heartbeats and periodic fire
times against this clock, inside the SQL statement, so a host whose own clock is off
changes nothing.{% if cookiecutter.database == "sqlite" %} SQLite runs inside each process of one host: its clock is that host's.{% endif %}
"""

from datetime import UTC, datetime{% if cookiecutter.database == "postgresql" %}, timedelta{% endif %}

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
{%- if cookiecutter.database == "sqlite" %}

# The format SQLAlchemy stores datetimes in on SQLite, so stored and computed times
# compare as text; SQLite's clock counts milliseconds.
_FORMAT = "%Y-%m-%d %H:%M:%f000"
# A column default: the time of the INSERT.
SERVER_NOW = sa.text(f"(strftime('{_FORMAT}', 'now'))")
{%- else %}

# A column default: the time of the INSERT. statement_timestamp(), unlike now(), moves
# on within a long transaction.
SERVER_NOW = sa.text("statement_timestamp()")
{%- endif %}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A UTC datetime that is always timezone-aware, on the way in and on the way out.

    A naive datetime is refused rather than guessed at, and values read back are aware
    even where the database keeps no zone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def now(plus_seconds: float = 0.0) -> ColumnElement[datetime]:
    """The database's time when the statement runs, `plus_seconds` later (or earlier)."""
{%- if cookiecutter.database == "sqlite" %}
    return sa.func.strftime(_FORMAT, "now", f"{plus_seconds:+.6f} seconds", type_=UTCDateTime)
{%- else %}
    moment = sa.func.statement_timestamp(type_=UTCDateTime)
    if plus_seconds:
        later = moment + sa.literal(timedelta(seconds=plus_seconds), sa.Interval())
        return sa.type_coerce(later, UTCDateTime)
    return moment
{%- endif %}


def minutes_before_now(
    moment: sa.ColumnExpressionArgument[datetime | None],
) -> sa.ColumnElement[int]:
    """Whole minutes from `moment` to the database's time: 0 within the last minute."""
{%- if cookiecutter.database == "sqlite" %}
    # Truncated toward zero, which for times gone by is down.
    return sa.cast((sa.func.julianday("now") - sa.func.julianday(moment)) * 1440, sa.Integer)
{%- else %}
    seconds = sa.extract("epoch", sa.func.statement_timestamp() - moment)
    return sa.cast(sa.func.floor(seconds / 60), sa.Integer)
{%- endif %}
