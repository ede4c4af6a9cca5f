"""Processing an uploaded document: checksum, size, and for text, characters and words."""

import codecs
import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

from {{ cookiecutter.project_slug }}.jobs.registry import JobContext, PermanentJobError, Row, task
from {{ cookiecutter.project_slug }}.models import Document, DocumentStatus, utcnow
from {{ cookiecutter.project_slug }}.storage import Storage

CHUNK_BYTES = 1024 * 1024
TEXT_TYPES = {"application/json", "application/xml", "application/x-ndjson"}
WORD = re.compile(r"\S+")


def is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith("text/") or kind in TEXT_TYPES


def analyse(path: Path, text: bool) -> dict[str, Any]:
    """Read the file once, in chunks: sha256 and size, and for text, characters and words."""
    digest, size, characters, words = hashlib.sha256(), 0, 0, 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    in_word = False  # did the text so far end inside a word?
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if text:
                piece = decoder.decode(chunk)
                characters += len(piece)
                words += len(WORD.findall(piece)) - (in_word and piece[:1].strip() != "")
                in_word = piece[-1:].strip() != "" if piece else in_word
    facts: dict[str, Any] = {"sha256": digest.hexdigest(), "size_bytes": size}
    if text:
        tail = decoder.decode(b"", final=True)
        facts["char_count"] = characters + len(tail)
        facts["word_count"] = words + len(WORD.findall(tail)) - (in_word and tail[:1].strip() != "")
    return facts


DOCUMENT_ROW = Row(
    Document,
    unfinished=(DocumentStatus.PROCESSING,),
    failed=DocumentStatus.ERROR,
    cancelled=DocumentStatus.CANCELLED,
    ended_at="processed_at",
)


@task(timeout_seconds=600, max_attempts=3, row=DOCUMENT_ROW)
async def process_document(ctx: JobContext, document_id: str) -> dict[str, Any]:
    document = await ctx.session.get(Document, uuid.UUID(document_id))
    if document is None:
        raise PermanentJobError(f"document {document_id} does not exist")
    if document.status != DocumentStatus.PROCESSING:
        return {"status": document.status}  # a rerun after the outcome was recorded
    path = Storage(ctx.settings.storage_dir).path("documents", document.stored_name)
    try:
        # Reading and hashing block: a thread keeps the event loop serving.
        facts = await ctx.to_thread(analyse, path, is_text(document.content_type))
    except FileNotFoundError as error:
        raise PermanentJobError("the stored file is missing") from error
    for name, value in facts.items():
        setattr(document, name, value)
    document.status, document.processed_at, document.error = DocumentStatus.READY, utcnow(), None
    await ctx.session.commit()
    return facts
