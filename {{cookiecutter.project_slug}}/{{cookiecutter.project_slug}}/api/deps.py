"""What a route asks for by type:

    async def create(body: ..., session: SessionDep, control: JobControlDep) -> ...

`SessionDep` is a database session for the request, closed after it; `JobControlDep`
submits, cancels and retries jobs (`jobs/control.py`).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: SessionMaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


def get_job_control(request: Request) -> JobControl:
    control: JobControl = request.app.state.job_control
    return control


SessionDep = Annotated[AsyncSession, Depends(get_session)]
JobControlDep = Annotated[JobControl, Depends(get_job_control)]
