"""One large multipart upload, streamed from its own process in 1 MiB chunks, as a
browser or curl would send it. Prints the status and the seconds it took as JSON.

Usage: python bench/upload.py URL --mib 1024
"""

import argparse
import json
import time
import uuid
from collections.abc import Iterator

import httpx

CHUNK = 1024 * 1024


def multipart(boundary: str, mib: int) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    block = b"\x01" * CHUNK
    for _ in range(mib):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--mib", type=int, default=1024)
    options = parser.parse_args()
    boundary = uuid.uuid4().hex
    started = time.perf_counter()
    response = httpx.post(
        options.url,
        content=multipart(boundary, options.mib),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=600,
    )
    seconds = time.perf_counter() - started
    print(json.dumps({"status": response.status_code, "seconds": seconds}))


if __name__ == "__main__":
    main()
