"""service/bodies.py without a server: the multipart reader's edge cases, job parameters from hostile JSON
(every one a 4xx ApiError, never another exception), the one validation wording, reading a job body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from service.bodies import (
    MultipartReader,
    PartRule,
    parse_json_params,
    read_job_body,
    validate_params,
)
from service.errors import ApiError, error_response, validation_message

BOUNDARY = "b0undary"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(parts: list[tuple[str, bytes]], filename: str | None = "x.bin") -> bytes:
    out = b""
    for name, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


class Chunks:
    """An async chunk source that records how much of the body was pulled."""

    def __init__(self, body: bytes, size: int):
        self.body, self.size, self.pulled = body, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        for i in range(0, len(self.body), self.size):
            self.pulled = i + self.size
            yield self.body[i : i + self.size]


def read(body: bytes, rules: dict[str, PartRule], chunk: int = 64, **kw: object) -> dict:
    return asyncio.run(MultipartReader(CTYPE, rules, **kw).read(Chunks(body, chunk).__aiter__()))  # type: ignore[arg-type]


def error(fn: object, *args: object, **kw: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value


# ---------------------------------------------------------------- multipart


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_parts_survive_any_chunking(chunk: int) -> None:
    body = multipart([("params", b'{"a": 1}'), ("images", b"\x00" * 300), ("images", b"\xff" * 5)])
    parts = read(body, {"params": PartRule(100), "images": PartRule(max_count=3)}, chunk)
    assert parts["params"][0].data == b'{"a": 1}'
    assert [p.data for p in parts["images"]] == [b"\x00" * 300, b"\xff" * 5]
    assert parts["images"][0].filename == "x.bin"


def test_strict_reader_names_the_unexpected_part() -> None:
    err = error(read, multipart([("other", b"x")]), {"params": PartRule(), "evalset": PartRule()})
    assert (err.status_code, err.code) == (422, "invalid_parameters")
    assert "unexpected multipart part 'other'" in err.message and "'params' and 'evalset'" in err.message


def test_a_single_part_sent_twice_and_too_many_parts() -> None:
    err = error(read, multipart([("params", b"{}"), ("params", b"{}")]), {"params": PartRule()})
    assert err.status_code == 422 and "sent twice" in err.message
    body = multipart([("images", b"a")] * 4)
    err = error(read, body, {"images": PartRule(max_count=3)})
    assert err.status_code == 422 and "at most 3" in err.message


def test_lenient_reader_skips_other_and_extra_parts() -> None:
    body = multipart([("note", b"hi"), ("file", b"first"), ("file", b"second")])
    parts = read(body, {"file": PartRule()}, strict=False)
    assert list(parts) == ["file"] and [p.data for p in parts["file"]] == [b"first"]


def test_part_and_total_limits_are_413_and_stop_reading() -> None:
    body = multipart([("evalset", b"z" * 5000)]) + b"x" * 100_000
    chunks = Chunks(body, 256)
    rules = {"evalset": PartRule(1000, what="the evaluation-set zip")}
    with pytest.raises(ApiError) as info:
        asyncio.run(MultipartReader(CTYPE, rules).read(chunks.__aiter__()))  # type: ignore[arg-type]
    assert (info.value.status_code, info.value.code) == (413, "payload_too_large")
    assert info.value.message == "the evaluation-set zip is larger than 1,000 bytes"
    assert chunks.pulled < len(body) // 2, "the reader stops at the first problem"
    err = error(
        read, multipart([("images", b"a" * 600)] * 2), {"images": PartRule(max_count=2)}, max_total=1000
    )
    assert err.status_code == 413 and "in total" in err.message


def test_empty_parts_and_missing_filenames_are_kept() -> None:
    parts = read(multipart([("images", b"")], filename=None), {"images": PartRule()})
    assert parts["images"][0].data == b"" and parts["images"][0].filename == ""


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary
        (CTYPE, b"\x00garbage" * 50),
        (CTYPE, f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="{"n" * 10_000}"\r\n'.encode()),
    ],
    ids=["no boundary", "garbage", "10 kB header"],
)
def test_malformed_multipart_is_400(ctype: str, body: bytes) -> None:
    def go() -> None:
        asyncio.run(MultipartReader(ctype, {"a": PartRule()}).read(Chunks(body, 100).__aiter__()))  # type: ignore[arg-type]

    err = error(go)
    assert (err.status_code, err.code) == (400, "invalid_multipart")


# ---------------------------------------------------------------- hostile JSON

HOSTILE_JSON = {
    "nested arrays (100k deep)": b"[" * 100_000 + b"]" * 100_000,
    "nested objects (50k deep)": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nested in a field": b'{"layers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "integer with 5000 digits": b'{"seed": ' + b"9" * 5000 + b"}",
    "top-level array": b"[1, 2]",
    "top-level string": b'"params"',
    "top-level null": b"null",
    "top-level number": b"1e999",
    "invalid UTF-8": b'{"precision": "\xff"}',
    "truncated": b'{"runs": ',
    "not JSON": b"runs=3",
}


@pytest.mark.parametrize("body", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_is_422_not_an_exception(body: bytes) -> None:
    err = error(parse_json_params, body)
    assert (err.status_code, err.code) == (422, "invalid_parameters")


def test_empty_body_is_no_parameters() -> None:
    assert parse_json_params(b"") == {} and parse_json_params(b"  \n") == {}
    assert parse_json_params(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a UTF-8 BOM is tolerated


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: int = Field(1, ge=1, le=100)
    scalars: list[float] = Field(default_factory=list, max_length=4)
    name: str = "x"


VALID_JSON_BAD_VALUES = {
    "NaN for an int": b'{"runs": NaN}',
    "duplicate keys (the last wins)": b'{"runs": 1, "runs": "many"}',
    "string for a list": b'{"scalars": "1,2"}',
    "object in a list": b'{"scalars": [{"a": 1}]}',
    "lone surrogate key": b'{"\\udc00": 1}',
    "10k unknown keys": json.dumps({f"k{i}": i for i in range(10_000)}).encode(),
    "huge float for an int": b'{"runs": 1e308}',
}


@pytest.mark.parametrize("body", VALID_JSON_BAD_VALUES.values(), ids=VALID_JSON_BAD_VALUES.keys())
def test_hostile_values_fail_validation_as_422(body: bytes) -> None:
    err = error(validate_params, Params, parse_json_params(body))
    assert (err.status_code, err.code) == (422, "invalid_parameters")
    assert len(err.message) < 1000
    err.message.encode("utf-8")  # sendable: no lone surrogate in the message


def test_values_pydantic_accepts_stay_values() -> None:
    """Infinity for a float and a lone surrogate in a string pass validation: the job's own checks (and the
    error envelope, which escapes what UTF-8 cannot carry) deal with them, not a 500."""
    spec = validate_params(Params, parse_json_params(b'{"scalars": [Infinity], "name": "\\ud800"}'))
    assert spec.scalars == [float("inf")] and spec.name == "\ud800"


def test_envelope_escapes_what_utf8_cannot_carry() -> None:
    request = Request({"type": "http", "headers": [], "state": {"request_id": "r1"}})
    response = error_response(request, 422, "invalid_parameters", "precision: \ud800 unknown")
    assert json.loads(response.body)["error"] == {
        "code": "invalid_parameters",
        "message": "precision: \\ud800 unknown",
        "request_id": "r1",
    }


def test_validation_message_lists_five_then_counts() -> None:
    errors = [{"loc": ("body", f"k{i}"), "msg": "Value error, bad"} for i in range(8)]
    assert validation_message(errors, "parameters", skip=("body",)) == (
        "k0: bad; k1: bad; k2: bad; k3: bad; k4: bad (+3 more)"
    )
    assert validation_message([{"loc": (), "msg": "Field required"}], "request") == "request: Field required"


# ---------------------------------------------------------------- a job body


def request_with(body: bytes, ctype: str | None) -> Request:
    chunks: Iterator[bytes] = iter([body[: len(body) // 2], body[len(body) // 2 :]])

    async def receive() -> dict:
        chunk = next(chunks, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    headers = [(b"content-type", ctype.encode())] if ctype else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


def test_job_body_as_json_or_multipart() -> None:
    spec, parts = asyncio.run(read_job_body(request_with(b'{"runs": 3}', "application/json"), Params, {}))
    assert spec.runs == 3 and parts == {}
    spec, _ = asyncio.run(read_job_body(request_with(b"", None), Params, {}))
    assert spec.runs == 1
    body = multipart([("params", b'{"runs": 4}'), ("evalset", b"PK")])
    spec, parts = asyncio.run(read_job_body(request_with(body, CTYPE), Params, {"evalset": PartRule(10)}))
    assert spec.runs == 4 and parts["evalset"][0].data == b"PK"


def test_job_body_errors() -> None:
    def go(body: bytes, ctype: str | None, **kw: object) -> ApiError:
        return error(lambda: asyncio.run(read_job_body(request_with(body, ctype), Params, {}, **kw)))  # type: ignore[arg-type]

    assert go(b"runs=3", "text/plain").status_code == 415
    assert go(b"[" * 100_000, "application/json").code == "invalid_parameters"
    big = multipart([("params", b" " * 200)])
    assert go(big, CTYPE, params_max_bytes=100).message == "params is larger than 100 bytes"
