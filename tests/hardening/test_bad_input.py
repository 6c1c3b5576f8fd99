"""Bad-input corpus against a REAL server: every kind gets the documented 4xx envelope (or a correct answer),
the server stays ready after each one, and its memory stays bounded (VmRSS after each case, VmHWM over the
whole corpus, read from /proc of the server process).

The corpus is generated here, nothing is stored: bombs are a few kB of hand-written PNG/JPEG/BMP headers.
tests/service/test_service_errors.py checks the individual error paths in depth; this file is the broad
sweep with health and memory checks after every case.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import SceneSample, ServerHandle, iou
from tests.hardening.hardening_support import (
    assert_envelope,
    peak_rss_mb,
    png_bomb,
    png_bytes,
    reset_peak_rss,
    rss_mb,
    wait_healthy,
)

# Bounds on the server process. Decoding the largest accepted image (4096^2) peaks at ~7 bytes/pixel on one
# inference thread (~120 MB); the bombs must be refused before any of that is allocated.
RSS_GROWTH_PER_CASE_MB = 300
PEAK_GROWTH_MB = 600


# ---------------------------------------------------------------- generated images


def noise_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(width: int = 320, height: int = 240, **kw: object) -> bytes:
    return encode(noise_rgb(width, height), "JPEG", quality=90, **kw)


def jpeg_with_header_size(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF0 header claims width x height (a decompression bomb by header)."""
    data = bytearray(jpeg(64, 64))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def bmp_with_header_size(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming width x height, followed by almost no pixel data."""
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = header + b"\x00" * 64
    return b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, 14 + 40) + body


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png16_grey() -> bytes:
    arr = (np.linspace(0, 65535, 64 * 48, dtype=np.uint32).reshape(48, 64)).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    return encode(img, "PNG")


def png48_rgb(width: int = 64, height: int = 48) -> bytes:
    """16 bits per channel RGB (colour type 2, depth 16): Pillow cannot write it, so by hand."""
    row = b"".join(
        struct.pack(">HHH", x * 1000 % 65536, 30000, 65535 - x * 1000 % 65536) for x in range(width)
    )
    return png_bytes(width, height, 16, 2, row)


def png_with_corrupt_idat() -> bytes:
    """Garbage inside the deflate stream, CRC fixed up so only the decompressor can notice."""
    data = bytearray(encode(noise_rgb(64, 64), "PNG"))
    idat = data.find(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    for i in range(idat + 4 + 2, idat + 4 + length, 7):
        data[i] ^= 0x5A
    crc = zlib.crc32(bytes(data[idat : idat + 4 + length])) & 0xFFFFFFFF
    struct.pack_into(">I", data, idat + 4 + length, crc)
    return bytes(data)


def multipart(parts: list[tuple[str, str | None, bytes, str | None]], boundary: str = "hardening") -> bytes:
    """Raw multipart body: (name, filename, data, content type) per part."""
    out = b""
    for name, filename, data, ctype in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- the corpus


Send = Callable[[httpx.Client], httpx.Response]
Check = Callable[[httpx.Response], None]


@dataclass(frozen=True)
class Case:
    name: str
    send: Send
    status: int | tuple[int, ...]
    code: str | tuple[str, ...] | None = None
    check: Check | None = None  # extra checks on a 200 answer


def up(data: bytes, filename: str = "x.jpg", ctype: str = "image/jpeg", **params: object) -> Send:
    return lambda c: c.post("/v1/predict", params=params, files={"file": (filename, data, ctype)})


def raw(data: bytes, ctype: str | None, **params: object) -> Send:
    headers = {"Content-Type": ctype} if ctype else {}
    return lambda c: c.post("/v1/predict", params=params, content=data, headers=headers)


def snap(payload: object) -> Send:
    return lambda c: c.post("/v1/predict/snapshot", json=payload)


def snap_raw(body: bytes, ctype: str) -> Send:
    return lambda c: c.post("/v1/predict/snapshot", content=body, headers={"Content-Type": ctype})


def answered(width: int, height: int, faces: int | None = None) -> Check:
    def check(r: httpx.Response) -> None:
        body = r.json()
        assert body["image"] == {"width": width, "height": height}, body["image"]
        for f in body["faces"]:
            x, y, w, h = f["box"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height, f
            assert 0.0 <= f["mask_probability"] <= 1.0
        if faces is not None:
            assert len(body["faces"]) == faces, body["faces"]

    return check


def mp(parts: list[tuple[str, str | None, bytes, str | None]], **params: object) -> Send:
    body = multipart(parts)
    ctype = "multipart/form-data; boundary=hardening"
    return lambda c: c.post("/v1/predict", params=params, content=body, headers={"Content-Type": ctype})


BIG_BASE64 = "A" * 10_400_000  # over the 10 MB default body limit once wrapped in JSON
BOMB = png_bomb(20_000)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4e9" height="4e9"><rect/></svg>'
PNG_SMALL = encode(noise_rgb(96, 64), "PNG")
JPEG_SMALL = jpeg(96, 64)

CORPUS: list[Case] = [
    # --- empty and truncated
    Case("empty raw body", raw(b"", "image/jpeg"), 422, "undecodable_image"),
    Case("no body, no content type", raw(b"", None), 415, "unsupported_media_type"),
    Case("zero-byte file part", up(b""), 422, "undecodable_image"),
    Case("empty multipart (closing boundary only)", mp([]), 422, "missing_file"),
    Case("truncated JPEG (first half)", up(jpeg(640, 480)[:9000]), 422, "undecodable_image"),
    Case(
        "truncated PNG (no IDAT end)", up(PNG_SMALL[: len(PNG_SMALL) // 2], "x.png"), 422, "undecodable_image"
    ),
    Case("PNG with a corrupt deflate stream", up(png_with_corrupt_idat(), "x.png"), 422, "undecodable_image"),
    Case(
        "JPEG magic then garbage",
        up(b"\xff\xd8\xff\xe0" + b"\x00" * 2000),
        (415, 422),
        ("undecodable_image", "unsupported_image_type"),
    ),
    Case(
        "PNG magic then garbage",
        up(b"\x89PNG\r\n\x1a\n" + b"\x13" * 500, "x.png"),
        (415, 422),
        ("undecodable_image", "unsupported_image_type"),
    ),
    # --- not images
    Case(
        "text file",
        up(b"hello, this is text\n" * 20, "notes.txt", "text/plain"),
        415,
        "unsupported_image_type",
    ),
    Case("PDF", up(PDF, "doc.pdf", "application/pdf"), 415, "unsupported_image_type"),
    Case("SVG (claims 4e9 px)", up(SVG, "x.svg", "image/svg+xml"), 415, "unsupported_image_type"),
    Case("animated GIF", up(animated_gif(), "a.gif", "image/gif"), 415, "unsupported_image_type"),
    Case(
        "static GIF",
        up(encode(noise_rgb(32, 32), "GIF"), "s.gif", "image/gif"),
        415,
        "unsupported_image_type",
    ),
    Case("TIFF", up(encode(noise_rgb(32, 32), "TIFF"), "s.tif", "image/tiff"), 415, "unsupported_image_type"),
    Case("ELF binary", up(b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "a.out"), 415, "unsupported_image_type"),
    # --- wrong name / type, right bytes: the type is read from the bytes
    Case(
        "PNG bytes named .jpg as image/jpeg",
        up(PNG_SMALL, "photo.jpg", "image/jpeg"),
        200,
        check=answered(96, 64),
    ),
    Case("JPEG bytes sent raw as image/png", raw(JPEG_SMALL, "image/png"), 200, check=answered(96, 64)),
    Case(
        "JPEG bytes as application/octet-stream part",
        up(JPEG_SMALL, "blob", "application/octet-stream"),
        200,
        check=answered(96, 64),
    ),
    # --- unusual but valid images: a correct answer
    Case("16-bit grey PNG", up(png16_grey(), "g16.png", "image/png"), 200, check=answered(64, 48)),
    Case(
        "16-bit/channel RGB PNG (hand-written)",
        up(png48_rgb(), "rgb48.png", "image/png"),
        200,
        check=answered(64, 48),
    ),
    Case(
        "CMYK JPEG",
        up(encode(noise_rgb(120, 80).convert("CMYK"), "JPEG"), "cmyk.jpg"),
        200,
        check=answered(120, 80),
    ),
    Case(
        "1x1 PNG",
        up(encode(Image.new("RGB", (1, 1), "white"), "PNG"), "1.png"),
        200,
        check=answered(1, 1, faces=0),
    ),
    Case(
        "1x1 JPEG, whole image classified",
        up(encode(Image.new("RGB", (1, 1)), "JPEG"), detect_faces="false"),
        200,
        check=answered(1, 1, faces=1),
    ),
    Case(
        "palette PNG with transparency",
        up(encode(noise_rgb(64, 64).convert("P"), "PNG", transparency=0), "p.png"),
        200,
        check=answered(64, 64),
    ),
    Case("WebP", up(encode(noise_rgb(80, 60), "WEBP"), "x.webp", "image/webp"), 200, check=answered(80, 60)),
    Case("BMP", up(encode(noise_rgb(80, 60), "BMP"), "x.bmp", "image/bmp"), 200, check=answered(80, 60)),
    Case("large valid JPEG (4000x3000, 12 MP)", up(jpeg(4000, 3000)), 200, check=answered(4000, 3000)),
    # --- decompression bombs: refused from the header, before any pixel is decoded
    Case(
        f"20000x20000 PNG bomb ({len(BOMB) // 1024} kB)",
        up(BOMB, "bomb.png", "image/png"),
        413,
        "image_too_large",
    ),
    Case("PNG bomb as base64 snapshot", snap({"image": b64(BOMB)}), 413, "image_too_large"),
    Case(
        "4097x4096 PNG (one column over the pixel limit)",
        up(png_bytes(4097, 4096, 1, 0, b"\x00" * 513), "edge.png"),
        413,
        "image_too_large",
    ),
    Case(
        "JPEG header claiming 60000x60000", up(jpeg_with_header_size(60_000, 60_000)), 413, "image_too_large"
    ),
    Case(
        "BMP header claiming 30000x30000",
        up(bmp_with_header_size(30_000, 30_000), "b.bmp"),
        413,
        "image_too_large",
    ),
    # --- body size
    Case("body over MASKLITE_MAX_BODY_BYTES", up(b"\xff" * 10_100_000), 413, "payload_too_large"),
    Case("huge base64 snapshot (10.4 MB)", snap({"image": BIG_BASE64}), 413, "payload_too_large"),
    # --- base64 / data URLs
    Case("invalid base64", snap({"image": "%%%% not base64 !!"}), 422, "invalid_base64"),
    Case("base64 with a bad length", snap({"image": "QUJD" * 10 + "Q"}), 422, "invalid_base64"),
    Case(
        "data URL with a text type",
        snap({"image": "data:text/plain;base64," + b64(b"hello")}),
        415,
        "unsupported_media_type",
    ),
    Case(
        "data URL image/svg+xml",
        snap({"image": "data:image/svg+xml;base64," + b64(SVG)}),
        415,
        "unsupported_image_type",
    ),
    Case(
        "data URL without ;base64",
        snap({"image": "data:image/png," + b64(PNG_SMALL)}),
        422,
        "invalid_data_url",
    ),
    Case("data URL without a comma", snap({"image": "data:image/png;base64"}), 422, "invalid_data_url"),
    Case("base64 of text", snap({"image": b64(b"plain text, no image")}), 415, "unsupported_image_type"),
    Case(
        "base64 with line breaks (MIME style)",
        snap({"image": base64.encodebytes(JPEG_SMALL).decode()}),
        200,
        check=answered(96, 64),
    ),
    Case(
        "URL-safe base64 without padding",
        snap({"image": base64.urlsafe_b64encode(JPEG_SMALL).decode().rstrip("=")}),
        200,
        check=answered(96, 64),
    ),
    # --- JSON shape
    Case("snapshot: image is a number", snap({"image": 12345}), 422, "validation_error"),
    Case("snapshot: empty image", snap({"image": ""}), 422, "validation_error"),
    Case("snapshot: JSON array", snap([b64(JPEG_SMALL)]), 422, "validation_error"),
    Case("snapshot: not JSON", snap_raw(b"{image: nope", "application/json"), 422, "validation_error"),
    Case("snapshot: empty JSON body", snap_raw(b"", "application/json"), 422, "validation_error"),
    Case(
        "snapshot: extra fields are ignored",
        snap({"image": b64(JPEG_SMALL), "debug": True, "x": [1]}),
        200,
        check=answered(96, 64),
    ),
    # --- content types and multipart structure
    Case("wrong content type (text/plain)", raw(JPEG_SMALL, "text/plain"), 415, "unsupported_media_type"),
    Case(
        "wrong content type (application/json)",
        raw(b'{"image": "x"}', "application/json"),
        415,
        "unsupported_media_type",
    ),
    Case("multipart without a boundary", raw(b"--x\r\n", "multipart/form-data"), 400, "invalid_multipart"),
    Case(
        "multipart garbage",
        raw(b"garbage" * 50, "multipart/form-data; boundary=zz"),
        (400, 422),
        ("invalid_multipart", "missing_file"),
    ),
    Case(
        "multipart without a `file` part",
        mp([("image", "x.jpg", JPEG_SMALL, "image/jpeg")]),
        422,
        "missing_file",
    ),
    Case(
        "multipart with extra fields",
        mp(
            [
                ("comment", None, b"hi", None),
                ("file", "x.jpg", JPEG_SMALL, "image/jpeg"),
                ("more", "y.bin", b"\x00" * 1000, None),
            ]
        ),
        200,
        check=answered(96, 64),
    ),
    Case(
        "two `file` parts: the first is used",
        mp([("file", "a.jpg", JPEG_SMALL, "image/jpeg"), ("file", "b.txt", b"text", "text/plain")]),
        200,
        check=answered(96, 64),
    ),
    Case(
        "traversal file name (never used on disk)",
        up(JPEG_SMALL, "../../../../tmp/owned.jpg"),
        200,
        check=answered(96, 64),
    ),
    Case("2 kB file name", up(JPEG_SMALL, "n" * 2_000 + ".jpg"), 200, check=answered(96, 64)),
    Case(
        "10 kB part header (over the parser's header limit)",
        up(JPEG_SMALL, "n" * 10_000 + ".jpg"),
        400,
        "invalid_multipart",
    ),
    # --- parameters
    Case("unknown model", up(JPEG_SMALL, model="int4"), 422, "unknown_model"),
    Case("model path traversal", up(JPEG_SMALL, model="../../etc/passwd"), 422, "validation_error"),
    Case("empty model", up(JPEG_SMALL, model=""), 422, "validation_error"),
    Case("negative min_face_size", up(JPEG_SMALL, min_face_size=-1), 422, "validation_error"),
    Case(
        "absurd min_face_size (1e30)", up(JPEG_SMALL, min_face_size="1" + "0" * 30), 422, "validation_error"
    ),
    Case("fractional min_face_size", up(JPEG_SMALL, min_face_size="1.5"), 422, "validation_error"),
    Case("detect_faces=maybe", up(JPEG_SMALL, detect_faces="maybe"), 422, "validation_error"),
    Case("unknown query parameter is ignored", up(JPEG_SMALL, colour="blue"), 200, check=answered(96, 64)),
    Case(
        "repeated query parameter (model=int8&model=float32)",
        lambda c: c.post("/v1/predict?model=int8&model=float32", files={"file": ("x.jpg", JPEG_SMALL)}),
        422,
        "validation_error",
    ),
    Case("snapshot: unknown model", snap({"image": b64(JPEG_SMALL), "model": "fp64"}), 422, "unknown_model"),
    Case(
        "snapshot: min_face_size 10^9",
        snap({"image": b64(JPEG_SMALL), "min_face_size": 10**9}),
        422,
        "validation_error",
    ),
    # --- routes and methods
    Case("GET on the predict route", lambda c: c.get("/v1/predict"), 405, "method_not_allowed"),
    Case("unknown route", lambda c: c.post("/v1/predict/../../etc/passwd"), 404, "not_found"),
]


# ---------------------------------------------------------------- hostile JSON structure, on every JSON route

# Each is invalid for every route (so no job starts). json.loads raises RecursionError on deep nesting and
# ValueError past 4,300 integer digits, not only JSONDecodeError: before service/bodies.py caught both, the
# job routes answered these with a 500.
HOSTILE_JSON: dict[str, bytes] = {
    "arrays nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
    "objects nested 50k deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep nesting inside a field": b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "integer with 5,000 digits": b'{"seed": ' + b"9" * 5_000 + b', "runs": ' + b"1" * 5_000 + b"}",
    "NaN and Infinity": b'{"runs": NaN, "scalars": [Infinity], "min_face_size": -Infinity}',
    "top-level array": b"[1, 2]",
    "top-level string": b'"image"',
    "duplicate keys": b'{"image": "QUJD", "image": 2, "runs": 1, "runs": -2}',
    "wrong types in nested fields": b'{"image": {"a": [1]}, "kinds": [[1]], "threads": [{"a": 1}]}',
    "strings where lists are expected": b'{"image": ["x"], "kinds": "multiply", "threads": "12"}',
    "lone surrogates": b'{"\\udc00": 1, "image": "\\ud800", "precision": "\\ud800"}',
    "10k-key object": json.dumps({f"k{i}": i for i in range(10_000)}).encode(),
    "invalid UTF-8": b'{"image": "\xff\xfe", "precision": "\xff"}',
}
# the framework parses the snapshot body (400 when it cannot, 422 when the shape is wrong); the job routes
# parse theirs in service/bodies.py (422 invalid_parameters, as for any bad parameter)
JSON_ROUTES: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "/v1/predict/snapshot": ((400, 422), ("bad_request", "validation_error", "invalid_base64")),
    "/v1/robustness": ((422,), ("invalid_parameters",)),
    "/v1/benchmark": ((422,), ("invalid_parameters",)),
}


def json_body(path: str, body: bytes) -> Send:
    return lambda c: c.post(path, content=body, headers={"Content-Type": "application/json"})


def params_part(path: str, body: bytes) -> Send:
    return lambda c: c.post(path, files={"params": (None, body, "application/json")})


CORPUS += [
    Case(f"hostile JSON, {name}: {path}", json_body(path, body), status, code)
    for name, body in HOSTILE_JSON.items()
    for path, (status, code) in JSON_ROUTES.items()
] + [
    # a `params` part has its own size limit: the biggest structures may be refused for their size first
    Case(
        f"hostile JSON, {name}: {path} multipart params",
        params_part(path, body),
        (*status, 413),
        (*code, "payload_too_large"),
    )
    for name, body in HOSTILE_JSON.items()
    for path, (status, code) in JSON_ROUTES.items()
    if path != "/v1/predict/snapshot"
]


# ---------------------------------------------------------------- tests


def answer_summary(r: httpx.Response) -> str:
    """The error code, or the number of faces of a 200 (for the RELIABILITY.md case table)."""
    try:
        body = r.json()
    except ValueError:
        return f"non-JSON {r.headers.get('content-type')}"
    if r.status_code == 200:
        return f"{len(body.get('faces', []))} face(s)"
    return str(body.get("error", {}).get("code", "?"))


@pytest.fixture(scope="module")
def srv(live_server_handle: ServerHandle) -> Iterator[tuple[ServerHandle, float, bool]]:
    """The shared live server, its RSS before the corpus, and whether its peak RSS could be reset."""
    pid = live_server_handle.proc.pid
    wait_healthy(live_server_handle.url)
    yield live_server_handle, rss_mb(pid), reset_peak_rss(pid)


@pytest.fixture(scope="module")
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=60) as c:
        yield c


def test_corpus_has_enough_kinds() -> None:
    assert len(CORPUS) >= 20
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    hostile = {c.name.rsplit(": ", 1)[1].split()[0] for c in CORPUS if c.name.startswith("hostile JSON")}
    assert hostile == set(JSON_ROUTES), "every JSON route gets the hostile JSON structures"


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_bad_input(
    case: Case, http: httpx.Client, srv: tuple[ServerHandle, float, bool], record_property: Callable
) -> None:
    handle, rss_before, _ = srv
    r = case.send(http)
    record_property("cases", 1)
    record_property("detail", f"{r.status_code} {answer_summary(r)}")
    if case.status == 200:
        assert r.status_code == 200, r.text[:500]
        assert r.json()["request_id"] == r.headers["x-request-id"]
        if case.check:
            case.check(r)
    else:
        assert_envelope(r, case.status, case.code)
    # the server survived it and did not keep the memory
    assert handle.alive(), handle.logs()[-3000:]
    assert http.get("/health/ready").status_code == 200
    now = rss_mb(handle.proc.pid)
    assert now < rss_before + RSS_GROWTH_PER_CASE_MB, (
        f"RSS {now:.0f} MB, {rss_before:.0f} MB before the corpus"
    )


def test_lying_content_length_is_refused_before_reading(srv: tuple[ServerHandle, float, bool]) -> None:
    """Content-Length: 1 TB with 10 bytes sent: 413 at once (no wait for a body that never comes)."""
    handle, _, _ = srv
    host, port = handle.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000000000000\r\n\r\n0123456789"
        )
        chunks = []
        while chunk := s.recv(65536):  # the server closes the connection after the 413
            chunks.append(chunk)
        head = b"".join(chunks).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert "payload_too_large" in head
    wait_healthy(handle.url)


def test_exif_rotated_photo_boxes_are_in_display_coordinates(
    http: httpx.Client, scene_samples: list[SceneSample], record_property: Callable
) -> None:
    """A photo stored sideways with an EXIF orientation tag is answered in the upright (display) frame:
    image size swapped back and the same face boxes as the upright photo (IoU >= 0.8)."""
    upright = None
    for sample in scene_samples:
        data = encode(Image.open(sample.path).convert("RGB"), "JPEG", quality=95)
        body = http.post("/v1/predict", files={"file": ("u.jpg", data, "image/jpeg")}).json()
        if len(body["faces"]) >= 2:
            upright = (sample, body)
            break
    assert upright is not None, "no scene with 2+ detected faces"
    sample, want = upright
    img = Image.open(sample.path).convert("RGB")
    tried = 0
    # orientation tag -> how the pixels are stored so that applying the tag gives the upright image
    for tag, stored in (
        (3, img.transpose(Image.Transpose.ROTATE_180)),
        (6, img.transpose(Image.Transpose.ROTATE_90)),
        (8, img.transpose(Image.Transpose.ROTATE_270)),
        (2, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    ):
        exif = Image.Exif()
        exif[0x0112] = tag
        data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
        r = http.post("/v1/predict", files={"file": ("r.jpg", data, "image/jpeg")})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["image"] == {"width": sample.width, "height": sample.height}, (tag, got["image"])
        assert len(got["faces"]) == len(want["faces"]), (tag, got["faces"], want["faces"])
        for f in want["faces"]:
            best = max(iou(tuple(f["box"]), tuple(g["box"])) for g in got["faces"])
            assert best >= 0.8, (tag, f, got["faces"])
        tried += 1
    record_property("cases", tried)


def test_memory_bounded_over_the_corpus(
    srv: tuple[ServerHandle, float, bool], http: httpx.Client, record_property: Callable
) -> None:
    """The whole corpus once more, in this test (it used to rely on running after test_bad_input, in file
    order): the peak RSS over all of it, and RSS now."""
    handle, _, _ = srv
    pid = handle.proc.pid
    rss_before, peak_reset = rss_mb(pid), reset_peak_rss(pid)
    for case in CORPUS:
        case.send(http)
    assert handle.alive(), handle.logs()[-3000:]
    peak, now = peak_rss_mb(pid), rss_mb(pid)
    record_property("cases", 1)
    record_property(
        "detail",
        f"RSS before {rss_before:.0f} MB, after {now:.0f} MB, peak {peak:.0f} MB (reset={peak_reset})",
    )
    assert now < rss_before + RSS_GROWTH_PER_CASE_MB, (rss_before, now)
    if peak_reset:
        assert peak < rss_before + PEAK_GROWTH_MB, f"peak {peak:.0f} MB vs {rss_before:.0f} MB before"
