"""`/api/v1/documents`: streamed uploads with a size limit, safe names, processing."""

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select

from {{ cookiecutter.project_slug }}.db import SessionMaker
from {{ cookiecutter.project_slug }}.jobs.control import JobControl
from {{ cookiecutter.project_slug }}.models import Document, JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import start_web
from tests.test_jobs import FINISHED, wait_for

TEXT = "Jobs run in the background.\nÉvery word counts: twice, even.\n".encode()


async def upload(
    client: httpx.AsyncClient, name: str, data: bytes, content_type: str = "text/plain"
) -> httpx.Response:
    return await client.post("/api/v1/documents", files={"file": (name, data, content_type)})


async def test_a_text_document_is_stored_then_processed(
    control: JobControl, client: httpx.AsyncClient
) -> None:
    response = await upload(client, "notes.txt", TEXT)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (await wait_for(control, uuid.UUID(accepted["job_id"]), *FINISHED)).status == (
        JobStatus.SUCCEEDED
    )
    shown = (await client.get(f"/api/v1/documents/{accepted['id']}")).json()
    assert shown["status"] == "ready"
    assert shown["sha256"] == hashlib.sha256(TEXT).hexdigest()
    assert (shown["size_bytes"], shown["char_count"], shown["word_count"]) == (
        len(TEXT),
        len(TEXT.decode()),
        len(TEXT.decode().split()),
    )
    content = await client.get(f"/api/v1/documents/{accepted['id']}/content")
    assert content.content == TEXT
    assert 'filename="notes.txt"' in content.headers["content-disposition"]


async def test_odd_filenames_are_kept_as_metadata_and_stored_under_generated_names(
    control: JobControl, client: httpx.AsyncClient, settings: Settings
) -> None:
    names = {"../../etc/passwd": "passwd", "résumé 📄.txt": "résumé 📄.txt", "": ""}
    for sent, kept in names.items():
        response = await upload(client, sent, b"data", "application/octet-stream")
        assert response.status_code == 202, response.text
        shown = (await client.get(f"/api/v1/documents/{response.json()['id']}")).json()
        assert shown["original_filename"] == kept
    stored = [path for path in settings.storage_dir.rglob("*") if path.is_file()]
    assert len(stored) == len(names)
    assert all(path.parent == settings.storage_dir / "documents" for path in stored)
    assert all(len(path.name) == 32 for path in stored)


async def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(
    settings: Settings, sessionmaker: SessionMaker, client: httpx.AsyncClient
) -> None:
    too_big = b"x" * (settings.max_upload_bytes + 1)
    response = await upload(client, "big.bin", too_big)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert not [path for path in settings.storage_dir.rglob("*") if path.is_file()]
    async with sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(Document))).one() == 0


async def test_bad_uploads_and_ids_get_4xx(client: httpx.AsyncClient) -> None:
    not_multipart = await client.post("/api/v1/documents", json={"file": "text"})
    assert not_multipart.status_code == 422
    assert "multipart/form-data" in not_multipart.json()["detail"][0]["msg"]
    other_field = await client.post("/api/v1/documents", files={"other": ("a.txt", b"a")})
    assert other_field.status_code == 422
    assert "no file" in other_field.json()["detail"][0]["msg"]
    unknown = uuid.uuid4()
    for path in ("", "/content"):
        assert (await client.get(f"/api/v1/documents/{unknown}{path}")).status_code == 404
    assert (await client.post(f"/api/v1/documents/{unknown}/archive")).status_code == 404
    assert (await client.get("/api/v1/documents/not-a-uuid")).status_code == 422
    assert (await client.get("/api/v1/documents", params={"limit": 0})).status_code == 422


async def test_listing_archiving_and_one_document_per_idempotency_key(
    control: JobControl, client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {"Idempotency-Key": "upload-1"}
    first, again = [
        await client.post(
            "/api/v1/documents", files={"file": ("a.txt", b"a", "text/plain")}, headers=headers
        )
        for _ in range(2)
    ]
    assert first.json()["id"] == again.json()["id"]
    assert len([path for path in settings.storage_dir.rglob("*") if path.is_file()]) == 1
    await wait_for(control, uuid.UUID(first.json()["job_id"]), *FINISHED)
    archived = (await client.post(f"/api/v1/documents/{first.json()['id']}/archive")).json()
    assert archived["archived_at"] is not None
    listed = (await client.get("/api/v1/documents", params={"status": "ready"})).json()
    assert [document["id"] for document in listed] == [first.json()["id"]]


def multipart(boundary: str, size: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    block = b"\0" * chunk
    for _ in range(size // chunk):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_100_mb_upload_keeps_the_server_memory_flat(settings: Settings, tmp_path: Path) -> None:
    size = 100 * 1024 * 1024
    settings = settings.model_copy(update={"max_upload_bytes": size})
    with start_web(settings, tmp_path / "web.log") as web:
        web.wait_until_up()
        before = peak_rss_kib(web.popen.pid)
        boundary = uuid.uuid4().hex
        response = httpx.post(
            f"{web.url}/api/v1/documents",
            content=multipart(boundary, size),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=120,
        )
        assert response.status_code == 202, response.text
        growth_mib = (peak_rss_kib(web.popen.pid) - before) / 1024
        stored = settings.storage_dir / "documents"
        assert [path.stat().st_size for path in stored.iterdir()] == [size]
        print(f"100 MiB upload: server peak RSS grew by {growth_mib:.1f} MiB")
        assert growth_mib < 40, f"peak RSS grew by {growth_mib:.1f} MiB"
