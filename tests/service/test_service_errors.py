"""Every error path: status code, the one JSON envelope, X-Request-ID, Retry-After where it applies."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ServerFactory, ServerHandle
from tests.helpers.http import stalled_upload

TINY_BODY = 2_000_000
TINY_PIXELS = 2_000_000


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "request_id"}, err
    assert err["message"] and isinstance(err["message"], str)
    assert err["request_id"] and err["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert err["code"] == code, err
    return err


def jpeg(width: int = 640, height: int = 480, seed: int = 0, quality: int = 85) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real, valid 1-bit PNG of width x height zeros: ~50 kB on the wire, 400 MP once decoded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def upload(
    client: httpx.Client, data: bytes, name: str = "x.jpg", ctype: str = "image/jpeg", **params: object
):
    return client.post("/v1/predict", params=params, files={"file": (name, data, ctype)})


@pytest.fixture(scope="module")
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def tiny(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """Small limits, one inference thread and one in-flight slot."""
    handle = server_factory.start(
        {
            "MASKLITE_MAX_BODY_BYTES": str(TINY_BODY),
            "MASKLITE_MAX_PIXELS": str(TINY_PIXELS),
            "MASKLITE_MAX_INFLIGHT": "1",
            "MASKLITE_THREADS": "1",
            "MASKLITE_RETRY_AFTER_S": "2",
        }
    )
    yield handle
    handle.stop()


# ---------------------------------------------------------------- 404 / 405 / 415 / 422


def test_not_found(http: httpx.Client) -> None:
    assert_error(http.get("/v1/nope"), 404, "not_found")
    assert_error(http.post("/v2/predict"), 404, "not_found")


def test_method_not_allowed(http: httpx.Client) -> None:
    assert_error(http.get("/v1/predict"), 405, "method_not_allowed")
    assert_error(http.delete("/v1/models"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"just some text, not an image\n", "notes.txt"),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n", "doc.pdf"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "x.svg"),
    ],
)
def test_unsupported_type(http: httpx.Client, data: bytes, name: str) -> None:
    assert_error(upload(http, data, name=name, ctype="image/jpeg"), 415, "unsupported_image_type")


def test_gif_is_unsupported(http: httpx.Client) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert_error(upload(http, buf.getvalue(), name="a.gif"), 415, "unsupported_image_type")


def test_wrong_content_type(http: httpx.Client) -> None:
    err = assert_error(
        http.post("/v1/predict", content=b"hello", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert "multipart/form-data" in err["message"]
    assert_error(http.post("/v1/predict", json={"image": "x"}), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "data",
    [
        b"",  # zero-byte file
        jpeg()[:600],  # truncated JPEG: header fine, data cut
        jpeg()[:2] + b"\x00" * 500,  # JPEG magic, garbage after
    ],
)
def test_undecodable(http: httpx.Client, data: bytes) -> None:
    """Bytes that are not a usable image: 422 when recognisably broken, 415 when not recognised at all."""
    r = upload(http, data)
    assert r.status_code in (415, 422), r.text
    err = assert_error(r, r.status_code)
    assert err["code"] in ("undecodable_image", "unsupported_image_type")


def test_truncated_jpeg_is_422(http: httpx.Client) -> None:
    data = jpeg(quality=95)
    assert_error(upload(http, data[: len(data) // 2]), 422, "undecodable_image")


def test_unknown_model_lists_the_available_ones(http: httpx.Client) -> None:
    available = [m["precision"] for m in http.get("/v1/models").json()["models"]]
    err = assert_error(upload(http, jpeg(), model="int4"), 422, "unknown_model")
    for precision in available:
        assert precision in err["message"]
    snap = http.post(
        "/v1/predict/snapshot", json={"image": base64.b64encode(jpeg()).decode(), "model": "int4"}
    )
    assert_error(snap, 422, "unknown_model")


@pytest.mark.parametrize(
    "params",
    [
        {"min_face_size": -1},
        {"min_face_size": "big"},
        {"detect_faces": "maybe"},
        {"model": "../../etc/passwd"},
    ],
)
def test_bad_query_parameters(http: httpx.Client, params: dict) -> None:
    assert_error(upload(http, jpeg(), **params), 422, "validation_error")


def test_missing_file_part(http: httpx.Client) -> None:
    r = http.post("/v1/predict", files={"image": ("x.jpg", jpeg(), "image/jpeg")})
    assert_error(r, 422, "missing_file")
    r = http.post("/v1/predict", data={"file": "not a file"}, files={"other": ("x", b"1")})
    # a plain text field named "file" still carries bytes: they are simply not an image
    assert r.status_code in (415, 422)
    assert_error(r, r.status_code)


def test_extra_multipart_fields_are_ignored(http: httpx.Client) -> None:
    r = http.post("/v1/predict", data={"comment": "hi"}, files={"file": ("x.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text


def test_malformed_multipart(http: httpx.Client) -> None:
    r = http.post("/v1/predict", content=b"garbage", headers={"Content-Type": "multipart/form-data"})
    assert_error(r, 400, "invalid_multipart")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"image": "%%% not base64 %%%"}, 422, "invalid_base64"),
        ({"image": "data:text/html;base64,PGgxPmhpPC9oMT4="}, 415, "unsupported_media_type"),
        ({"image": ""}, 422, "validation_error"),
        ({"picture": "abc"}, 422, "validation_error"),
        ({"image": base64.b64encode(b"hello world").decode()}, 415, "unsupported_image_type"),
        ({"image": base64.b64encode(jpeg()).decode(), "min_face_size": -5}, 422, "validation_error"),
    ],
)
def test_snapshot_errors(http: httpx.Client, payload: dict, status: int, code: str) -> None:
    assert_error(http.post("/v1/predict/snapshot", json=payload), status, code)


def test_snapshot_invalid_json(http: httpx.Client) -> None:
    r = http.post("/v1/predict/snapshot", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")


# ---------------------------------------------------------------- 413


def test_pixel_bomb_is_refused_before_decoding(http: httpx.Client) -> None:
    bomb = png_bomb()
    assert len(bomb) < 200_000
    err = assert_error(upload(http, bomb, name="bomb.png", ctype="image/png"), 413, "image_too_large")
    assert "pixels" in err["message"]
    snap = http.post("/v1/predict/snapshot", json={"image": base64.b64encode(bomb).decode()})
    assert_error(snap, 413, "image_too_large")
    assert http.get("/health/ready").status_code == 200


def test_body_over_default_limit(http: httpx.Client) -> None:
    big = b"\xff" * 10_500_000
    assert_error(upload(http, big), 413, "payload_too_large")
    assert http.get("/health/live").status_code == 200


def test_tiny_limits_body(tiny: ServerHandle) -> None:
    with httpx.Client(base_url=tiny.url, timeout=60) as c:
        # with Content-Length: refused before the body is read
        assert_error(upload(c, b"\x00" * (TINY_BODY + 1)), 413, "payload_too_large")
        # chunked, no Content-Length: refused while streaming
        chunks = (b"\x00" * 100_000 for _ in range(TINY_BODY // 100_000 + 5))
        r = c.post("/v1/predict", content=chunks, headers={"Content-Type": "image/jpeg"})
        assert_error(r, 413, "payload_too_large")
        # the snapshot JSON counts too
        b64 = base64.b64encode(b"\x00" * TINY_BODY).decode()
        assert_error(c.post("/v1/predict/snapshot", json={"image": b64}), 413, "payload_too_large")
        # just under the limits is fine
        assert upload(c, jpeg(1600, 1200)).status_code == 200


def test_tiny_limits_pixels(tiny: ServerHandle) -> None:
    with httpx.Client(base_url=tiny.url, timeout=60) as c:
        err = assert_error(upload(c, jpeg(1700, 1300)), 413, "image_too_large")
        assert f"{TINY_PIXELS:,}" in err["message"]


# ---------------------------------------------------------------- 503


def test_overload_is_refused_fast_with_retry_after(tiny: ServerHandle) -> None:
    """One in-flight slot and 12 concurrent clients: some answers are 503 + Retry-After, none other."""
    data = jpeg(1600, 1200, seed=3)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=tiny.url, timeout=60) as c:
            return upload(c, data)

    # the slot held for sure (an upload that stalls after its headers), not by hoping two requests overlap
    with httpx.Client(base_url=tiny.url, timeout=60) as c:
        held = stalled_upload(tiny.url)
        try:
            wait_inflight(c, 1)
            r = upload(c, data)
            assert_error(r, 503, "overloaded")
            assert r.headers["retry-after"] == "2"
        finally:
            held.close()
        wait_inflight(c, 0)  # the slot comes back when its client goes
        assert upload(c, data).status_code == 200
    # and under a flood: only 200 or the same 503; whether two requests overlap is up to the scheduler
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(60)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1, statuses
    for r in responses:
        if r.status_code == 503:
            assert_error(r, 503, "overloaded")
            assert r.headers["retry-after"] == "2"
    with httpx.Client(base_url=tiny.url, timeout=60) as c:
        assert upload(c, data).status_code == 200
        assert c.get("/health/ready").json()["inflight"] == 0


def wait_inflight(c: httpx.Client, n: int, timeout: float = 30.0) -> None:
    """Until /health/ready counts `n` requests in flight."""
    deadline = time.monotonic() + timeout
    while (got := c.get("/health/ready").json()["inflight"]) != n:
        assert time.monotonic() < deadline, f"{got} in flight, not {n}, after {timeout:.0f} s"
        time.sleep(0.05)


# ---------------------------------------------------------------- request ids, API key


def test_bad_client_request_id_is_replaced(http: httpx.Client) -> None:
    r = http.get("/nope", headers={"X-Request-ID": "bad id with spaces; and <html>"})
    err = assert_error(r, 404)
    assert " " not in err["request_id"]
    long = "a" * 300
    assert http.get("/health/live", headers={"X-Request-ID": long}).headers["x-request-id"] != long


def test_api_key_and_cors_when_configured(server_factory: ServerFactory) -> None:
    handle = server_factory.start(
        {
            "MASKLITE_API_KEY": "k3y",
            "MASKLITE_PROTECT_PREDICT": "true",
            "MASKLITE_CORS_ORIGINS": "https://app.example,https://other.example",
        }
    )
    try:
        with httpx.Client(base_url=handle.url, timeout=60) as c:
            # CORS: listed origins only
            pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
            ok = c.options("/v1/predict", headers={"Origin": "https://app.example", **pre})
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == "https://app.example"
            bad = c.options("/v1/predict", headers={"Origin": "https://evil.example", **pre})
            assert "access-control-allow-origin" not in bad.headers
            spec = c.get("/openapi.json").json()
            assert spec["paths"]["/v1/predict"]["post"]["security"]
            assert "ApiKey" in spec["components"]["securitySchemes"]
            assert_error(upload(c, jpeg()), 401, "unauthorized")
            assert_error(
                c.post("/v1/predict", files={"file": ("x.jpg", jpeg())}, headers={"X-API-Key": "no"}), 403
            )
            ok = c.post("/v1/predict", files={"file": ("x.jpg", jpeg())}, headers={"X-API-Key": "k3y"})
            assert ok.status_code == 200, ok.text
            bearer = c.post(
                "/v1/predict", files={"file": ("x.jpg", jpeg())}, headers={"Authorization": "Bearer k3y"}
            )
            assert bearer.status_code == 200
            assert c.get("/health/ready").status_code == 200  # probes stay open
            assert c.get("/v1/models").status_code == 200
    finally:
        handle.stop()
    assert "k3y" not in handle.logs()


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (5000, 1), (1, 5000), (6000, 4)])
@pytest.mark.parametrize("detect", ["true", "false"])
def test_degenerate_sizes_are_answered(http: httpx.Client, size: tuple[int, int], detect: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, "PNG")
    r = upload(http, buf.getvalue(), name="strip.png", ctype="image/png", detect_faces=detect)
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": size[0], "height": size[1]}
    if detect == "false":
        assert [f["box"] for f in r.json()["faces"]] == [[0, 0, size[0], size[1]]]


def test_request_id_is_in_the_server_log(live_server_handle: ServerHandle) -> None:
    with httpx.Client(base_url=live_server_handle.url, timeout=60) as c:
        assert upload(c, jpeg(), detect_faces="false").status_code == 200
        r = c.post(
            "/v1/predict", files={"file": ("x.jpg", jpeg())}, headers={"X-Request-ID": "trace-me-4711"}
        )
        assert r.status_code == 200
        c.get("/nope", headers={"X-Request-ID": "trace-me-404"})
    wanted = ("[trace-me-4711] POST /v1/predict 200", "[trace-me-404] GET /nope 404")
    logs = live_server_handle.logs_with(*wanted)
    for line in wanted:
        assert line in logs


def test_open_routes_declare_no_security(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert "security" not in spec["paths"]["/v1/predict"]["post"]
