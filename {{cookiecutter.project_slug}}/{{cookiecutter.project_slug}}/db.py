"""The async database engine and its sessions."""

import asyncio
import logging
{%- if cookiecutter.database == "sqlite" %}
import sqlite3
{%- endif %}
import time
from typing import Any

from sqlalchemy import event
{%- if cookiecutter.database == "sqlite" %}
from sqlalchemy.engine import Connection
from sqlalchemy.engine.default import DefaultExecutionContext
{%- endif %}
from sqlalchemy.exc import DBAPIError, {% if cookiecutter.database == "postgresql" %}DisconnectionError, {% endif %}InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
{%- if cookiecutter.database == "sqlite" %}
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.util import await_only
{%- endif %}
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.settings import Settings

SessionMaker = async_sessionmaker[AsyncSession]
{%- if cookiecutter.database == "sqlite" %}

# How long a write waits for the one before it: then it fails as SQLite's own would.
BUSY_TIMEOUT_SECONDS = 5
{%- endif %}


def create_engine(database_url: str{% if cookiecutter.database == "postgresql" %}, timeout_seconds: float = 60.0{% endif %}) -> AsyncEngine:
{%- if cookiecutter.database == "sqlite" %}
    # _reset below replaces the pool's rollback of each connection it gets back.
    engine = create_async_engine(database_url, pool_reset_on_return=None)

    # WAL lets readers go on while a job writes; the busy timeout makes concurrent
    # writers wait for the lock instead of failing at once with "database is locked".
    # synchronous=NORMAL: under WAL a commit no longer waits for an fsync (checkpoints
    # do). A crashed process loses nothing committed; a power cut may lose the last
    # commits, never the database's consistency.
    @event.listens_for(engine.sync_engine, "connect")
    def _configure_sqlite(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]  # DB-API connection
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    # One write transaction at a time in this process, in the order they came. SQLite
    # lets one connection write at a time, and the others' busy handler sleeps and
    # retries (1, 2, 5 ... 100 ms), so a writer that came later often overtakes one that
    # has waited long: p99s of a second under load. Here the rest wait in line on a
    # lock, taken at a transaction's first write (where sqlite3 begins it) and given
    # back when its connection returns to the pool, after the commit or rollback.
    writing = asyncio.Lock()

    async def _wait_to_write() -> None:
        try:
            async with asyncio.timeout(BUSY_TIMEOUT_SECONDS):
                await writing.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _one_writer(
        conn: Connection,
        _cursor: Any,
        _sql: str,
        _params: Any,
        context: DefaultExecutionContext,
        _many: bool,
    ) -> None:
        writes = context.isinsert or context.isupdate or context.isdelete
        info = conn.connection.info
        if writes and not info.get("writing"):
            await_only(_wait_to_write())
            info["writing"] = True

    def _done_writing(record: ConnectionPoolEntry) -> None:
        if record.info.pop("writing", False):
            writing.release()

    # Every call on an aiosqlite connection is a round trip to the connection's thread,
    # and the pool's default reset adds one after each commit. A rollback undoes only an
    # open transaction, so it is made only when one is open.
    @event.listens_for(engine.sync_engine, "reset")
    def _reset(dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
        if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()
        _done_writing(record)

    @event.listens_for(engine.sync_engine, "invalidate")
    def _invalidated(_dbapi: Any, record: ConnectionPoolEntry, _error: object) -> None:
        _done_writing(record)

    return engine
{%- else %}
    # A host cut off mid-transaction would keep its row locks until the server noticed
    # the connection was dead, by default after hours, and no other executor could take
    # over its jobs meanwhile. TCP keepalives and a user timeout on the server's side of
    # each connection make it notice within about `timeout_seconds`.
    server_settings = {
        "tcp_keepalives_idle": str(max(1, round(timeout_seconds / 2))),
        "tcp_keepalives_interval": str(max(1, round(timeout_seconds / 6))),
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": str(round(timeout_seconds * 1000)),
    }
    # The timeouts end a connect or statement that a lost network would leave hanging.
    engine = create_async_engine(
        database_url,
        connect_args={
            "timeout": timeout_seconds,
            "command_timeout": timeout_seconds,
            "server_settings": server_settings,
        },
    )

    # A connection the server closed (a restart, an idle timeout) is replaced before use.
    # asyncpg sees the close when it comes, so asking costs no round trip, where
    # pool_pre_ping costs three on every checkout (BEGIN, a ping, ROLLBACK).
    @event.listens_for(engine.sync_engine, "checkout")
    def _replace_closed(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed the connection")

    return engine
{%- endif %}


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be used now ({% if cookiecutter.database == "sqlite" %}its file cannot be
    written: disk full, read-only, locked too long{% else %}the server is down, restarting,
    unreachable or out of connections{% endif %}) rather than that a statement is wrong."""
    if isinstance(error, OSError | OperationalError | InterfaceError):
        return True
    if isinstance(error, DBAPIError):
{%- if cookiecutter.database == "sqlite" %}
        return error.connection_invalidated
{%- else %}
        # asyncpg's own errors, by SQLSTATE class: 08 connection, 53 insufficient
        # resources, 57P operator intervention (shutdown, starting up).
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return error.connection_invalidated or sqlstate.startswith(("08", "53", "57P"))
{%- endif %}
    return False


class Outage:
    """Logs when a loop first loses the database (or another server), and when it has it
    back: not every failed try in between."""

    def __init__(self, logger: logging.Logger, what: str, server: str = "the database") -> None:
        self._logger = logger
        self._what = what
        self._server = server
        self._since: float | None = None

    def failed(self, error: BaseException) -> None:
        if self._since is None:
            self._since = time.monotonic()
            self._logger.error(
                "%s: %s is unavailable (%s: %s); retrying until it is back",
                self._what,
                self._server,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )

    def ended(self) -> None:
        if self._since is not None:
            seconds = time.monotonic() - self._since
            self._logger.warning("%s: %s is back after %.1f s", self._what, self._server, seconds)
            self._since = None


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    # Objects stay readable after commit, so a handler can return what it just saved.
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def database_engine(settings: Settings) -> AsyncEngine:
    """The engine for the settings' database."""
    return create_engine(settings.database_url{% if cookiecutter.database == "postgresql" %}, settings.database_timeout_seconds{% endif %})


# How long closing the connections may take at shutdown{% if cookiecutter.database == "postgresql" %}: with the database unreachable
# (packets dropped), closing each would wait for an answer that never comes{% endif %}.
CLOSE_TIMEOUT_SECONDS = 3


async def close(engine: AsyncEngine) -> None:
    """Close the engine's connections, or give up after CLOSE_TIMEOUT_SECONDS, so that
    a process stopping is not held up."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await engine.dispose()
    except TimeoutError:
        logging.getLogger(__name__).error(
            "closing the database connections took over %g s; left to the exit",
            CLOSE_TIMEOUT_SECONDS,
        )
