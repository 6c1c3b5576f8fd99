"""A typed Python client for a running masklite service, on httpx.

    with Client("http://localhost:8000", api_key=None) as ml:
        result = ml.predict("photo.jpg")                     # PredictResult: faces, model, timings
        job = ml.wait(ml.video("door.mp4", stride=2))        # Job: state, progress, result
        print(job.result["summary"]["people"])
        frames = ml.artifact(job, "frames.jsonl")

Overload answers (429, 503) are retried, waiting what the service's Retry-After says (bounded), up to
`retries` times; every other error raises MaskliteError with the service's code and message.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ImageInput = str | Path | bytes
RETRY_STATUSES = (429, 503)
FINISHED_STATES = ("done", "failed", "cancelled")


class MaskliteError(Exception):
    """An error answer: the HTTP status, the service's code and message (the error envelope)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


class JobFailed(MaskliteError):
    """wait() on a job that ended failed or cancelled."""


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]
    label: str
    mask_probability: float
    detector_score: float | None = None
    too_small: bool = False
    landmarks: tuple[tuple[float, float], ...] = ()  # five points; () from a service without them


@dataclass(frozen=True)
class PredictResult:
    faces: list[Face]
    width: int
    height: int
    model: dict[str, Any]
    timings_ms: dict[str, float]
    warnings: list[str]
    request_id: str
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PredictResult:
        faces = [
            Face(
                tuple(f["box"]),  # type: ignore[arg-type]
                f["label"],
                f["mask_probability"],
                f.get("detector_score"),
                f.get("too_small", False),
                tuple(tuple(p) for p in f.get("landmarks") or ()),  # type: ignore[misc]
            )
            for f in body["faces"]
        ]
        image = body.get("image") or {}
        return cls(
            faces,
            int(image.get("width", 0)),
            int(image.get("height", 0)),
            body.get("model", {}),
            body.get("timings_ms", {}),
            body.get("warnings", []),
            body.get("request_id", ""),
            body,
        )


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    progress: float
    result: dict[str, Any] | None
    error: str | None
    artifacts: dict[str, str]  # name -> URL path
    raw: dict[str, Any] = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        return cls(
            body.get("id") or body["job_id"],
            body.get("kind", ""),
            body["state"],
            float(body.get("progress", 0.0)),
            body.get("result"),
            body.get("error"),
            body.get("artifacts") or {},
            body,
        )


def _read(value: ImageInput) -> tuple[str, bytes]:
    if isinstance(value, bytes):
        return "upload", value
    path = Path(value)
    return path.name, path.read_bytes()


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
        max_retry_wait_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s, transport=transport)
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self.sleep: Callable[[float], None] = time.sleep  # tests count the waits

    # ------------------------------------------------------------ plumbing

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response = self._http.request(method, url, **kwargs)
            if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                break
            self.sleep(self._retry_after(response))
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _retry_after(self, response: httpx.Response) -> float:
        try:
            wait = float(response.headers.get("Retry-After", "1"))
        except ValueError:  # an HTTP date: not sent by masklite; wait a second
            wait = 1.0
        return min(max(wait, 0.0), self.max_retry_wait_s)

    @staticmethod
    def _error(response: httpx.Response) -> MaskliteError:
        try:
            error = response.json()["error"]
            return MaskliteError(
                response.status_code, error["code"], error["message"], error.get("request_id")
            )
        except (ValueError, KeyError, TypeError):
            return MaskliteError(response.status_code, "http_error", response.text[:200])

    def _submit(self, path: str, params: dict[str, Any], files: list[tuple[str, Any]] | None) -> Job:
        if files:
            parts = [("params", (None, json.dumps(params), "application/json")), *files]
            response = self._request("POST", path, files=parts)
        else:
            response = self._request("POST", path, json=params)
        return self.job(response.json()["job_id"])

    # ------------------------------------------------------------ predict

    def predict(self, image: ImageInput, model: str | None = None, **query: Any) -> PredictResult:
        """POST /v1/predict with the image as a multipart upload; `query`: detect_faces, min_face_size, ..."""
        name, data = _read(image)
        params = {k: v for k, v in {"model": model, **query}.items() if v is not None}
        response = self._request("POST", "/v1/predict", params=params, files={"file": (name, data)})
        return PredictResult.from_json(response.json())

    def snapshot(self, image: ImageInput, model: str = "int8", **fields: Any) -> PredictResult:
        """POST /v1/predict/snapshot: the image as base64 JSON (what the camera page sends)."""
        _, data = _read(image)
        body = {"image": base64.b64encode(data).decode("ascii"), "model": model, **fields}
        return PredictResult.from_json(self._request("POST", "/v1/predict/snapshot", json=body).json())

    # ------------------------------------------------------------ jobs

    def video(
        self,
        file: ImageInput | None = None,
        url: str | None = None,
        duration_s: float | None = None,
        stride: int = 1,
        blur: bool = False,
        precision: str = "int8",
        min_votes: int = 3,
    ) -> Job:
        """POST /v1/video: a video file (path or bytes) or a stream `url` (+ `duration_s`)."""
        params: dict[str, Any] = {
            "stride": stride,
            "blur": blur,
            "precision": precision,
            "min_votes": min_votes,
        }
        if url is not None:
            return self._submit("/v1/video", {**params, "url": url, "duration_s": duration_s}, None)
        if file is None:
            raise ValueError("video(): give a file or a url")
        name, data = _read(file)
        return self._submit("/v1/video", params, [("file", (name, data, "application/octet-stream"))])

    def robustness(self, params: dict[str, Any] | None = None, evalset: ImageInput | None = None) -> Job:
        files = [("evalset", (*_read(evalset), "application/zip"))] if evalset is not None else None
        return self._submit("/v1/robustness", params or {}, files)

    def benchmark(self, params: dict[str, Any] | None = None, images: list[ImageInput] | None = None) -> Job:
        files = [("images", _read(i)) for i in images or ()]
        return self._submit("/v1/benchmark", params or {}, files or None)

    def job(self, job: Job | str) -> Job:
        job_id = job.id if isinstance(job, Job) else job
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}").json())

    def cancel(self, job: Job | str) -> Job:
        job_id = job.id if isinstance(job, Job) else job
        return Job.from_json(self._request("DELETE", f"/v1/jobs/{job_id}").json())

    def wait(
        self,
        job: Job | str,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job finishes -> the done Job; JobFailed when it failed or was cancelled,
        TimeoutError after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            current = self.job(job)
            if on_progress is not None:
                on_progress(current)
            if current.finished:
                if current.state != "done":
                    raise JobFailed(200, f"job_{current.state}", current.error or current.state)
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {current.id} still {current.state} after {timeout_s} s")
            self.sleep(poll_s)

    def artifact(self, job: Job | str, name: str) -> bytes:
        job_id = job.id if isinstance(job, Job) else job
        return self._request("GET", f"/v1/jobs/{job_id}/artifacts/{name}").content

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
