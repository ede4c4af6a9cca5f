"""Documents: uploaded, then processed by a job. `/api/v1/documents`."""

import uuid
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from {{ cookiecutter.project_slug }}.api import API_PREFIX
from {{ cookiecutter.project_slug }}.api.deps import JobControlDep, SessionDep
from {{ cookiecutter.project_slug }}.api.errors import invalid
from {{ cookiecutter.project_slug }}.api.fields import Limit, Offset, one_value_each
from {{ cookiecutter.project_slug }}.api.idempotency import (
    REPEAT_AFTER_CLEANUP,
    IdempotencyKey,
    scoped,
    start,
)
from {{ cookiecutter.project_slug }}.api.responses import Responses, refusal
from {{ cookiecutter.project_slug }}.models import Document, DocumentStatus, utcnow
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.storage import BadUpload, Storage, UploadTooLarge
from {{ cookiecutter.project_slug }}.tasks.documents import process_document

router = APIRouter(prefix=f"{API_PREFIX}/documents", tags=["documents"])

# Room for the multipart framing around the file, in the early Content-Length check.
FRAMING_BYTES = 64 * 1024
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
NOT_FOUND: Responses = {404: refusal("No document with this id")}


class DocumentAccepted(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    status: DocumentStatus


class DocumentPublic(DocumentAccepted):
    original_filename: str
    content_type: str
    size_bytes: int | None
    sha256: str | None
    char_count: int | None
    word_count: int | None
    error: str | None
    created_at: datetime
    processed_at: datetime | None
    archived_at: datetime | None

    @classmethod
    def of(cls, document: Document) -> "DocumentPublic":
        return cls.model_validate(document, from_attributes=True)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def find(session: AsyncSession, document_id: uuid.UUID) -> Document:
    document = await session.get(Document, document_id)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no document with id {document_id}")
    return document


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=UPLOAD_BODY,
    responses={413: refusal("Larger than MAX_UPLOAD_BYTES"), **REPEAT_AFTER_CLEANUP},
)
async def upload_document(
    request: Request,
    session: SessionDep,
    control: JobControlDep,
    idempotency_key: IdempotencyKey = None,
) -> DocumentAccepted:
    """Upload a file (form field `file`); it is stored, then processed in the background.

    Repeated with the same Idempotency-Key, the upload is checked and received again,
    then answered with the document the key made first."""
    settings = settings_of(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes + FRAMING_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the upload is too large")
    storage = Storage(settings.storage_dir)
    try:
        upload = await storage.receive(
            request.headers.get("content-type", ""),
            request.stream(),
            folder="documents",
            field_name="file",
            max_bytes=settings.max_upload_bytes,
        )
    except UploadTooLarge as error:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from error
    except BadUpload as error:
        raise invalid(("body", "file"), str(error)) from error
    path = storage.path("documents", upload.stored_name)
    document = Document(
        original_filename=upload.original_filename,
        stored_name=upload.stored_name,
        content_type=upload.content_type,
        size_bytes=upload.size,
    )
    key = scoped("documents", idempotency_key)
    job = process_document.new_job(document_id=str(document.id), idempotency_key=key)
    try:
        stored, job = await start(session, control, document, job)
    except BaseException:
        await anyio.Path(path).unlink(missing_ok=True)  # no row, so no file either
        raise
    if stored is not document:  # the key made a document before: keep that one's file
        await anyio.Path(path).unlink(missing_ok=True)
    return DocumentAccepted(id=stored.id, job_id=job.id, status=stored.status)


@router.get("", dependencies=[Depends(one_value_each)])
async def list_documents(
    session: SessionDep,
    status: DocumentStatus | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> list[DocumentPublic]:
    """Documents, newest first."""
    statement = select(Document).where(col(Document.job_id).is_not(None))
    if status is not None:
        statement = statement.where(col(Document.status) == status)
    statement = statement.order_by(col(Document.created_at).desc(), col(Document.id))
    documents = await session.exec(statement.offset(offset).limit(limit))
    return [DocumentPublic.of(document) for document in documents]


@router.get("/{document_id}", responses=NOT_FOUND)
async def get_document(document_id: uuid.UUID, session: SessionDep) -> DocumentPublic:
    return DocumentPublic.of(await find(session, document_id))


@router.get("/{document_id}/content", response_class=FileResponse, responses=NOT_FOUND)
async def download_document(
    document_id: uuid.UUID, request: Request, session: SessionDep
) -> FileResponse:
    """The file as uploaded, under its original name."""
    document = await find(session, document_id)
    path = Storage(settings_of(request).storage_dir).path("documents", document.stored_name)
    if not await anyio.Path(path).is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"the file of document {document_id} is gone"
        )
    return FileResponse(
        path, media_type=document.content_type, filename=document.original_filename or "document"
    )


@router.post("/{document_id}/archive", responses=NOT_FOUND)
async def archive_document(document_id: uuid.UUID, session: SessionDep) -> DocumentPublic:
    """Mark the document archived; the cleanup job deletes it after the retention period."""
    document = await find(session, document_id)
    if document.archived_at is None:
        document.archived_at = utcnow()
        session.add(document)
        await session.commit()
    return DocumentPublic.of(document)
