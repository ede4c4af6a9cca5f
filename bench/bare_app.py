"""Baselines for the HTTP cases: a bare FastAPI app, on the baked project's own database
code, models and request model, that does only the one thing measured and nothing else.

  POST /api/v1/emails  the usual first pattern: validate and insert the email row, then
                       asyncio.create_task a sender that marks it sent (no job row, no
                       middleware, nothing kept through a restart)
  POST /upload         stream the request body to a file, then delete it
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from job_service.api.emails import EmailCreate
from job_service.db import SessionMaker, create_engine, create_sessionmaker
from job_service.models import Email, EmailStatus, utcnow
from job_service.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_engine(get_settings().database_url)
    app.state.sessionmaker = create_sessionmaker(engine)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
# Strong references: the event loop keeps only weak ones to its tasks.
sending: set[asyncio.Task[None]] = set()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/emails", status_code=status.HTTP_202_ACCEPTED)
async def create_email(payload: EmailCreate, request: Request) -> dict[str, str]:
    sessionmaker: SessionMaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        email = Email(**payload.model_dump())
        session.add(email)
        await session.commit()
    task = asyncio.create_task(mark_sent(sessionmaker, email.id))
    sending.add(task)
    task.add_done_callback(sending.discard)
    return {"id": str(email.id)}


async def mark_sent(sessionmaker: SessionMaker, email_id: uuid.UUID) -> None:
    """What the console sender does: the email goes to the log, the row says sent."""
    async with sessionmaker() as session:
        email = await session.get(Email, email_id)
        if email is not None:
            email.status, email.sent_at = EmailStatus.SENT, utcnow()
            await session.commit()


@app.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    storage = get_settings().storage_dir
    storage.mkdir(parents=True, exist_ok=True)
    path = Path(storage) / uuid.uuid4().hex
    size = 0
    with path.open("wb") as file:
        async for chunk in request.stream():
            file.write(chunk)
            size += len(chunk)
    path.unlink()
    return {"size": size}
