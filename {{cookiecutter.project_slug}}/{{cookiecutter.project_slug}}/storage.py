"""Files under STORAGE_DIR: uploads streamed to disk in chunks with a size limit, each
stored under a generated name. A client's filename is kept as metadata only, so no
request can choose where a file lands."""

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

STORED_NAME = re.compile(r"[0-9a-f]{32}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class UploadTooLarge(Exception):
    """The upload passed the size limit: answer 413."""


class BadUpload(Exception):
    """Not a multipart upload with the expected file field: answer 422."""


@dataclass
class Upload:
    stored_name: str
    original_filename: str
    content_type: str
    size: int


def safe_filename(raw: bytes) -> str:
    """The client's filename as metadata: its last path part, printable, at most 255."""
    name = raw.decode("utf-8", errors="replace").replace("\\", "/")
    return CONTROL_CHARACTERS.sub("", PurePosixPath(name).name)[:255]


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, folder: str, stored_name: str) -> Path:
        if not STORED_NAME.fullmatch(stored_name):
            raise ValueError(f"not a stored name: {stored_name!r}")
        return self.root / folder / stored_name

    async def receive(
        self,
        content_type: str,
        body: AsyncIterator[bytes],
        *,
        folder: str,
        field_name: str,
        max_bytes: int,
    ) -> Upload:
        """Stream the file field of a multipart body to disk. On any failure nothing
        stays behind: the file is written under a temporary name, renamed when complete."""
        kind, options = parse_options_header(content_type)
        if kind != b"multipart/form-data" or b"boundary" not in options:
            raise BadUpload("send the file as multipart/form-data")
        reader = _FilePartReader(field_name.encode())
        parser = MultipartParser(options[b"boundary"], reader.callbacks())
        stored_name = uuid.uuid4().hex
        final = self.path(folder, stored_name)
        partial = final.with_name(f"{stored_name}.partial")
        await anyio.Path(final.parent).mkdir(parents=True, exist_ok=True)
        size = 0
        try:
            async with await anyio.open_file(partial, "wb") as out:
                async for chunk in body:
                    try:
                        parser.write(chunk)
                    except MultipartParseError as error:
                        raise BadUpload(f"the multipart body is malformed: {error}") from error
                    for data in reader.take():
                        size += len(data)
                        if size > max_bytes:
                            raise UploadTooLarge(f"the file is larger than {max_bytes} bytes")
                        await out.write(data)
            parser.finalize()
            if not reader.found:
                raise BadUpload(f"no file in the form field {field_name!r}")
            await anyio.Path(partial).rename(final)
        finally:
            await anyio.Path(partial).unlink(missing_ok=True)
        return Upload(stored_name, reader.filename, reader.content_type, size)


@dataclass
class _FilePartReader:
    """Collects, per chunk fed to the parser, the bytes of one named file field."""

    field_name: bytes
    found: bool = False
    filename: str = ""
    content_type: str = "application/octet-stream"
    _in_file: bool = False
    _header: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _data: list[bytes] = field(default_factory=list)

    def callbacks(self) -> "MultipartCallbacks":
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._header.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def take(self) -> list[bytes]:
        data, self._data = self._data, []
        return data

    def _header_end(self) -> None:
        self._headers[bytes(self._header).lower()] = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if options.get(b"name") != self.field_name or self.found:
            return
        self._in_file = self.found = True
        self.filename = safe_filename(options.get(b"filename", b""))
        declared = self._headers.get(b"content-type", b"").decode("latin-1").strip()
        self.content_type = declared[:255] or self.content_type

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._data.append(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False
