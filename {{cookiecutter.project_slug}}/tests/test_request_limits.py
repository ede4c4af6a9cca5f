"""Request bodies are capped before anything parses them: past MAX_REQUEST_BYTES a request
gets 413 with the limit, whether it gives its length or sends its body in chunks; uploads
keep their own limit. Real uvicorn, real sockets."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx

from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import start_service

LIMIT = 64 * 1024
REFUSAL = {"detail": f"the request body is larger than {LIMIT} bytes (MAX_REQUEST_BYTES)"}


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"max_request_bytes": LIMIT})
    big = json.dumps({"name": "big", "items": ["x" * 100] * 1000}).encode()  # 104 kB
    assert len(big) > LIMIT

    def in_chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield from (big[start : start + 8192] for start in range(0, len(big), 8192))

    with start_service(settings, tmp_path) as service:
        url = f"{service[0].url}/api/v1/batches"
        headers = {"Content-Type": "application/json"}
        said = httpx.post(url, content=big, headers=headers)
        assert (said.status_code, said.json()) == (413, REFUSAL)
        chunked = httpx.post(url, content=in_chunks(), headers=headers)
        assert (chunked.status_code, chunked.json()) == (413, REFUSAL)
        # Under the limit, as before.
        small = httpx.post(url, json={"name": "small", "items": ["x"] * 10})
        assert small.status_code == 202, small.text
        # An upload larger than MAX_REQUEST_BYTES, within MAX_UPLOAD_BYTES: accepted.
        upload = {"file": ("words.txt", b"word " * 40_000, "text/plain")}
        document = httpx.post(f"{service[0].url}/api/v1/documents", files=upload)
        assert document.status_code == 202, document.text
