"""Streaming multipart/form-data reader that keeps the uploaded image in memory.

Starlette's form parser spools uploads over 1 MB to a temporary file; uploaded images must never touch
the disk, so predict parses the body itself with python-multipart's low-level parser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import ApiError


class MultipartImageReader:
    """Collects the bytes of the first part named `field`; other parts are skipped."""

    def __init__(self, content_type: str, field: str = "file"):
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError(400, "invalid_multipart", "multipart/form-data without a boundary")
        self.field = field.encode()
        self.data: bytearray | None = None
        self._in_target = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_cb,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    async def read(self, chunks: AsyncIterator[bytes]) -> bytes:
        try:
            async for chunk in chunks:
                if chunk:
                    self._parser.write(chunk)
            self._parser.finalize()
        except FormParserError as exc:
            raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from exc
        if self.data is None:
            raise ApiError(422, "missing_file", f"multipart body has no {self.field.decode()!r} part")
        return bytes(self.data)

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_target = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == self.field and self.data is None:
            self._in_target = True
            self.data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_target:
            self.data += data[start:end]  # type: ignore[operator]

    def _part_end(self) -> None:
        self._in_target = False
