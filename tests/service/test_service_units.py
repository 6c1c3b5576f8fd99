"""Request parsing pieces of the service that need no model: base64/data URLs, multipart, settings."""

from __future__ import annotations

import asyncio
import base64

import pytest

from service.bodies import MultipartImageReader, decode_base64_image
from service.errors import ApiError
from service.settings import Settings

PAYLOAD = bytes(range(256)) * 3


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(PAYLOAD).decode(),
        base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("="),
        "data:image/jpeg;base64," + base64.b64encode(PAYLOAD).decode(),
        "DATA:image/png;charset=x;base64," + base64.b64encode(PAYLOAD).decode(),
        "data:;base64," + base64.b64encode(PAYLOAD).decode(),
        "\n".join(base64.encodebytes(PAYLOAD).decode().split()),  # line-wrapped, as some phones send it
    ],
)
def test_base64_forms_decode_to_the_same_bytes(text: str) -> None:
    assert decode_base64_image(text) == PAYLOAD


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("not base64 at all!", 422, "invalid_base64"),
        ("QUJD*", 422, "invalid_base64"),
        ("data:text/plain;base64,QUJD", 415, "unsupported_media_type"),
        ("data:application/pdf;base64,QUJD", 415, "unsupported_media_type"),
        ("data:image/png,rawbytes", 422, "invalid_data_url"),
        ("data:image/png;base64", 422, "invalid_data_url"),
    ],
)
def test_bad_base64_is_a_client_error(text: str, status: int, code: str) -> None:
    with pytest.raises(ApiError) as info:
        decode_base64_image(text)
    assert (info.value.status_code, info.value.code) == (status, code)


async def _chunks(body: bytes, size: int):
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "XyZ123") -> tuple[str, bytes]:
    out = b""
    for name, data in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.bin"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", out


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_multipart_reader_keeps_the_file_part_across_chunk_boundaries(chunk: int) -> None:
    ctype, body = _multipart([("note", b"hello"), ("file", PAYLOAD), ("file", b"second ignored")])
    data = asyncio.run(MultipartImageReader(ctype).read(_chunks(body, chunk)))
    assert data == PAYLOAD


def test_multipart_without_file_part() -> None:
    ctype, body = _multipart([("image", PAYLOAD)])
    with pytest.raises(ApiError) as info:
        asyncio.run(MultipartImageReader(ctype).read(_chunks(body, 100)))
    assert (info.value.status_code, info.value.code) == (422, "missing_file")


def test_multipart_without_boundary() -> None:
    with pytest.raises(ApiError) as info:
        MultipartImageReader("multipart/form-data")
    assert (info.value.status_code, info.value.code) == (400, "invalid_multipart")


def test_multipart_garbage_body() -> None:
    with pytest.raises(ApiError) as info:
        asyncio.run(
            MultipartImageReader("multipart/form-data; boundary=abc").read(_chunks(b"\x00garbage" * 50, 9))
        )
    assert info.value.status_code in (400, 422)


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKLITE_PORT", "9123")
    monkeypatch.setenv("MASKLITE_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("MASKLITE_API_KEY", "s3cret")
    monkeypatch.setenv("MASKLITE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("MASKLITE_DETECTOR_PATH", "")
    s = Settings()
    assert s.port == 9123
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.log_level == "warning"
    assert s.detector_path is None


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MASKLITE_PORT", "MASKLITE_MAX_BODY_BYTES", "MASKLITE_HOST"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert (s.host, s.port, s.max_body_bytes) == ("127.0.0.1", 8000, 10_000_000)  # loopback unless told
