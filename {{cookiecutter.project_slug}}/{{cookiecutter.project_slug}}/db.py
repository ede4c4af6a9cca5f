"""The async database engine and the per-request session."""

from collections.abc import AsyncIterator
from typing import Annotated{% if cookiecutter.database == "sqlite" %}, Any{% endif %}

from fastapi import Depends, Request
{%- if cookiecutter.database == "sqlite" %}
from sqlalchemy import event
{%- endif %}
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
{%- if cookiecutter.database == "sqlite" %}
from sqlalchemy.pool import PoolResetState
{%- endif %}
from sqlmodel.ext.asyncio.session import AsyncSession

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(database_url: str) -> AsyncEngine:
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
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    # Every call on an aiosqlite connection is a round trip to the connection's thread,
    # and the pool's default reset adds one after each commit. A rollback undoes only an
    # open transaction, so it is made only when one is open.
    @event.listens_for(engine.sync_engine, "reset")
    def _reset(dbapi_connection: Any, _record: object, state: PoolResetState) -> None:
        if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()

    return engine
{%- else %}
    # pre_ping drops connections the server closed (restart, idle timeout) before use.
    return create_async_engine(database_url, pool_pre_ping=True)
{%- endif %}


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    # Objects stay readable after commit, so a handler can return what it just saved.
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: SessionMaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
