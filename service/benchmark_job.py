"""The benchmark kind's adapter: the request model and its checks against the card and the uploaded
images (422 before anything is queued). The job body is `bench.jobs:run_benchmark_job`, registered by name
in service/jobkinds.py and imported by the job process only: the API process never imports `bench`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from masklite.card import ModelCard
from masklite.image import ImageError, decode_image
from service.bodies import Part
from service.errors import ApiError
from service.settings import Settings

MAX_UPLOADED_IMAGES = 16
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,32}$")]


class BenchmarkRequest(BaseModel):
    """What to measure. Bounded so one job cannot hold the CPU for long (about a minute at the defaults)."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelName] | None = Field(
        None, min_length=1, max_length=4, description="precisions from /v1/models (default: all)"
    )
    threads: list[Annotated[int, Field(ge=1, le=8)]] = Field(
        [1, 2], min_length=1, max_length=4, description="LiteRT/OpenCV threads"
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=32)]] = Field(
        [1, 4], min_length=1, max_length=4, description="classifier batch sizes"
    )
    runs: int = Field(50, ge=1, le=1000, description="timed classifier calls per model x threads x batch")
    warmup: int = Field(5, ge=0, le=100)
    pipeline_runs: int = Field(20, ge=0, le=500, description="timed runs on the 640x480 target image")
    scene_repeats: int = Field(1, ge=1, le=5, description="timed passes over the image set")
    scene_limit: int | None = Field(None, ge=0, le=1000, description="first N scenes only")
    http_runs: int = Field(20, ge=0, le=500, description="HTTP vs in-process requests per model; 0: skip")


def loopback_url(host: str, port: int) -> str | None:
    """Where the job reaches its own service, or None when it is bound to one non-loopback interface."""
    if host in ("0.0.0.0", "::", "", "127.0.0.1", "localhost"):  # noqa: S104 - comparing, not binding
        return f"http://127.0.0.1:{port}"
    if host == "::1":
        return f"http://[::1]:{port}"
    return None


def benchmark_params(
    spec: BenchmarkRequest,
    card: ModelCard,
    settings: Settings,
    parts: dict[str, list[Part]],
    detector: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Blocking (run it on a thread): the request checked against the card and the uploaded `images`
    decoded once (a bad image fails here, not minutes later) -> (the job's parameters, their public
    part). `detector`: the file the service runs (default: the card's)."""
    images = parts.get("images", [])
    unknown = [m for m in spec.models or () if m not in card.models]
    if unknown:
        known = ", ".join(sorted(card.models))
        raise ApiError(422, "invalid_parameters", f"models: {', '.join(unknown)} not in {known}")
    named = [(part.filename or f"image{i}", part.data) for i, part in enumerate(images)]
    for name, data in named:
        if not data:
            raise ApiError(422, "invalid_image", f"images: {name[:60]!r} is empty (0 bytes)")
        try:
            decode_image(data, settings.max_pixels)
        except ImageError as exc:
            raise ApiError(422, "invalid_image", f"images: {name[:60]!r}: {exc}") from exc
    headers = {}
    if settings.protect_predict and settings.api_key is not None:
        headers["X-API-Key"] = settings.api_key.get_secret_value()
    params = {
        "request": spec.model_dump(),
        "images": named,
        "models_dir": str(settings.models_dir),
        "detector_path": str(detector) if detector else None,
        # with a broker the job runs on a worker, where no API listens on loopback: no HTTP section
        "self_url": None if settings.broker_url else loopback_url(settings.host, settings.port),
        "headers": headers,
    }
    public = {
        **spec.model_dump(),
        "images": [
            {"name": n[:100], "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in named
        ],
    }
    return params, public
