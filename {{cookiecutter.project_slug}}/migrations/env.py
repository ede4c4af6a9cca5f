"""Alembic runs migrations through the same async engine settings as the service."""

import asyncio
from logging.config import fileConfig
from typing import Literal

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from {{ cookiecutter.project_slug }} import models  # noqa: F401  # registers the tables
from {{ cookiecutter.project_slug }}.db import create_engine
from {{ cookiecutter.project_slug }}.settings import get_settings

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)


def render_item(kind: str, item: object, _context: AutogenContext) -> str | Literal[False]:
    # Write the service's column types as the plain types they store, so a revision
    # never imports the application and stays valid when the models change.
    if kind == "type" and isinstance(item, sa.TypeDecorator):
        return f"sa.{item.impl!r}"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        compare_type=True,
        render_item=render_item,
{%- if cookiecutter.database == "sqlite" %}
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
{%- endif %}
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine(get_settings().database_url)
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
asyncio.run(run_online())
