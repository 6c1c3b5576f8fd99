"""Request bodies, read in one place: multipart (streamed, in memory, a limit per part), a raw image, a job's
JSON parameters, and the one wording of a parameter validation error.

    MultipartReader(content_type, {"params": PartRule(64_000)}).read(chunks)   named parts, in memory
    read_image(request, media, timeout_s)   /v1/predict: the `file` part or the raw body (415, 408)
    decode_base64_image(text)            /v1/predict/snapshot: plain, URL-safe or data: URL base64
    read_job_body(request, Model, rules) job routes: JSON or multipart `params` (+ uploads) -> Model

Starlette's form parser spools uploads over 1 MB to a temporary file; uploads must never touch the disk, so
multipart bodies go through python-multipart's low-level parser here. Every problem is an ApiError (4xx,
the error envelope), never an exception that would become a 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import ApiError, validation_message

MULTIPART = "multipart/form-data"
JSON = "application/json"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")
# a job's parameters are a handful of fields: far below this
MAX_PARAMS_BYTES = 64_000

M = TypeVar("M", bound=BaseModel)


def media_type(content_type: str) -> str:
    """'Multipart/Form-Data; boundary=x' -> 'multipart/form-data'."""
    return content_type.split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------- multipart


@dataclass(frozen=True)
class PartRule:
    """What one part name may carry. Past `max_bytes` -> 413; past `max_count` parts -> 422 (a strict
    reader) or the extra parts are skipped (a lenient one)."""

    max_bytes: int | None = None
    max_count: int = 1
    what: str = ""  # how a 413 names it; default "part '<name>'"


@dataclass(frozen=True)
class Part:
    filename: str
    data: bytes


class MultipartReader:
    """Collects the parts named in `rules` in memory, part by part as the chunks arrive.

    strict: a part with another name, or one too many, is a 422 (job routes name every part they take);
    lenient: they are skipped (a predict upload may carry a form's other fields). `max_total`: all parts
    together, 413 past it."""

    def __init__(
        self,
        content_type: str,
        rules: Mapping[str, PartRule],
        strict: bool = True,
        max_total: int | None = None,
    ):
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise ApiError(400, "invalid_multipart", "multipart/form-data without a boundary")
        self.rules, self.strict, self.max_total = rules, strict, max_total
        self.parts: dict[str, list[Part]] = {}
        self._name: str | None = None  # the part being collected, None while skipping one
        self._filename = ""
        self._buf = bytearray()
        self._total = 0
        self._hname, self._hvalue = bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._error: ApiError | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._hname.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._hvalue.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    async def read(self, chunks: AsyncIterator[bytes]) -> dict[str, list[Part]]:
        """Every kept part by name, in body order; stops at the first problem."""
        try:
            async for chunk in chunks:
                if chunk:
                    self._parser.write(chunk)
                if self._error is not None:
                    raise self._error  # stop reading: the rest of the body cannot change the answer
            self._parser.finalize()
        except FormParserError as exc:
            raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from exc
        if self._error is not None:
            raise self._error
        return self.parts

    def _fail(self, status: int, code: str, message: str) -> None:
        if self._error is None:
            self._error = ApiError(status, code, message)
        self._name = None

    def _begin(self) -> None:
        self._headers, self._name = {}, None

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).lower()] = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        rule = self.rules.get(name)
        kept = len(self.parts.get(name, ()))
        if rule is not None and kept < rule.max_count:
            self._name, self._buf = name, bytearray()
            self._filename = options.get(b"filename", b"").decode("utf-8", "replace")
        elif not self.strict:
            return  # skipped
        elif rule is None:
            wanted = " and ".join(repr(n) for n in self.rules)
            self._fail(422, "invalid_parameters", f"unexpected multipart part {name[:40]!r}; send {wanted}")
        elif rule.max_count == 1:
            self._fail(422, "invalid_parameters", f"multipart part {name!r} sent twice")
        else:
            self._fail(422, "invalid_parameters", f"at most {rule.max_count} {name!r} parts")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            return
        self._buf += data[start:end]
        self._total += end - start
        limit = self.rules[self._name].max_bytes
        if limit is not None and len(self._buf) > limit:
            what = self.rules[self._name].what or f"part {self._name!r}"
            self._fail(413, "payload_too_large", f"{what} is larger than {limit:,} bytes")
        elif self.max_total is not None and self._total > self.max_total:
            self._fail(413, "payload_too_large", f"uploads larger than {self.max_total:,} bytes in total")

    def _end(self) -> None:
        if self._name is not None:
            self.parts.setdefault(self._name, []).append(Part(self._filename, bytes(self._buf)))
        self._name = None


class MultipartImageReader:
    """The /v1/predict upload: the first part named `field`; every other part is skipped."""

    def __init__(self, content_type: str, field: str = "file"):
        self.field = field
        self._reader = MultipartReader(content_type, {field: PartRule()}, strict=False)

    async def read(self, chunks: AsyncIterator[bytes]) -> bytes:
        parts = await self._reader.read(chunks)
        if not parts.get(self.field):
            raise ApiError(422, "missing_file", f"multipart body has no {self.field!r} part")
        return parts[self.field][0].data


# ---------------------------------------------------------------- an image upload


def image_media(content_type: str) -> str:
    """The media type of a predict upload, or 415 (checked before the body is read)."""
    media = media_type(content_type)
    if media != MULTIPART and media not in IMAGE_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {media or 'none'!r}: send multipart/form-data with a 'file' field, "
            "or raw image bytes as image/jpeg, image/png, image/webp or image/bmp",
        )
    return media


async def read_image(request: Request, media: str, timeout_s: float) -> bytes:
    """The upload, in memory; 408 when it has not fully arrived within `timeout_s` (frees the slot)."""
    try:
        async with asyncio.timeout(timeout_s):
            if media == MULTIPART:
                content_type = request.headers.get("content-type", "")
                return await MultipartImageReader(content_type).read(request.stream())
            return await request.body()
    except TimeoutError as exc:
        raise ApiError(
            408,
            "request_timeout",
            f"request body not received within {timeout_s:g} s (MASKLITE_BODY_TIMEOUT_S)",
            {"Connection": "close"},
        ) from exc


_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64_image(text: str) -> bytes:
    """Plain or URL-safe base64, padding optional, or a data: URL with an image/* type → bytes."""
    if text[:5].lower() == "data:":
        m = _DATA_URL.match(text[:256])
        if m is None:
            raise ApiError(422, "invalid_data_url", "data URL without a ',' separator")
        media, params = m.group(1).strip().lower(), m.group(2).lower()
        if media and not media.startswith("image/"):
            raise ApiError(415, "unsupported_media_type", f"data URL type {media!r} is not an image")
        if ";base64" not in params:
            raise ApiError(422, "invalid_data_url", "data URL must be base64-encoded (';base64,')")
        text = text[m.end() :]
    if _WHITESPACE.search(text):
        text = _WHITESPACE.sub("", text)
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid_base64", f"image is not valid base64: {exc}") from exc


# ---------------------------------------------------------------- job parameters


def parse_json_params(data: bytes) -> dict[str, Any]:
    """A job's parameters: an empty body is {}, anything but a JSON object is 422.

    json.loads raises more than JSONDecodeError on hostile input: RecursionError for deeply nested arrays
    or objects, ValueError for integers past Python's 4,300-digit conversion limit. Both are the client's
    fault, so both are a 422 here rather than a 500."""
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise ApiError(422, "invalid_parameters", "parameters are nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digits limit
        raise ApiError(422, "invalid_parameters", f"parameters are not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_parameters", "parameters must be a JSON object")
    return value


def validate_params(model: type[M], raw: dict[str, Any]) -> M:
    """The parameters as `model`, or 422 invalid_parameters naming the fields."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid_parameters", validation_message(exc.errors(), "parameters")) from exc


async def read_job_body(
    request: Request,
    model: type[M],
    uploads: Mapping[str, PartRule],
    params_max_bytes: int = MAX_PARAMS_BYTES,
    max_total: int | None = None,
) -> tuple[M, dict[str, list[Part]]]:
    """A job route's body: application/json (the parameters), or multipart/form-data with a part `params`
    (that JSON, optional) and the `uploads` parts -> (validated parameters, uploaded parts by name)."""
    content_type = request.headers.get("content-type", "")
    media = media_type(content_type)
    if media == MULTIPART:
        rules = {"params": PartRule(params_max_bytes, what="params"), **uploads}
        parts = await MultipartReader(content_type, rules, max_total=max_total).read(request.stream())
        params = parts.pop("params", None)
        return validate_params(model, parse_json_params(params[0].data if params else b"")), parts
    body = await request.body()
    if media not in ("", JSON) and body:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    return validate_params(model, parse_json_params(body)), {}


def job_body_doc(model: type[BaseModel], uploads: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """`openapi_extra` for a job route: the parameters as JSON, or as the multipart part `params` beside
    the `uploads` parts (name -> JSON schema). The routes read the body themselves (read_job_body)."""
    params = {"type": "string", "description": f"{model.__name__} as JSON"}
    return {
        "requestBody": {
            "required": False,
            "content": {
                JSON: {"schema": model.model_json_schema()},
                MULTIPART: {"schema": {"type": "object", "properties": {"params": params, **uploads}}},
            },
        }
    }
