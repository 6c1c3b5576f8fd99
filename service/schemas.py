"""Response and request bodies. Pydantic models so /openapi.json describes exactly what is sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MODEL_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
MAX_MIN_FACE = 10_000
# detector input side a client may ask for: below 160 YuNet finds little, above 1280 costs ~4x 640
MIN_DETECT_SIZE, MAX_DETECT_SIZE = 160, 1280


class ModelRef(BaseModel):
    name: str
    precision: str
    version: str
    sha256: str


class ImageSize(BaseModel):
    width: int
    height: int


class Face(BaseModel):
    box: tuple[int, int, int, int] = Field(description="[x, y, w, h] in original-image pixels")
    detector_score: float | None = Field(description="YuNet score; null when the whole image was classified")
    label: str = Field(
        description="a label from /v1/models, or 'unknown' for a face below the card's min_judgeable_face"
    )
    mask_probability: float = Field(
        ge=0.0, le=1.0, description="the model's probability, before any threshold"
    )
    too_small: bool = Field(False, description="true when the face is too small to judge (label 'unknown')")


class Timings(BaseModel):
    decode: float
    detect: float
    classify: float
    total: float = Field(description="server-side, from the request reaching the handler to the response")
    queue: float = Field(0.0, description="waiting for an inference thread")


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    image: ImageSize
    faces: list[Face]
    timings_ms: Timings
    warnings: list[str] = Field(default_factory=list, description="fallbacks used, e.g. no face detector")


class PredictQuery(BaseModel):
    """The predict options a client sets: the query of /v1/predict and the fields of /v1/predict/snapshot.
    The router turns them into the core's PredictOptions (same names), the one object passed down the
    request path."""

    model: str = Field(
        "int8", pattern=MODEL_PATTERN, description="a precision from /v1/models: int8 (default), float32, ..."
    )
    detect_faces: bool = Field(True, description="false: the whole image is one face crop")
    min_face_size: int = Field(
        0, ge=0, le=MAX_MIN_FACE, description="ignore (drop) faces smaller than this (px, shorter box side)"
    )
    detect_size: int | None = Field(
        None,
        ge=MIN_DETECT_SIZE,
        le=MAX_DETECT_SIZE,
        description="detector input's longer side (px); smaller is faster, finds fewer small faces. "
        "Default: MASKLITE_DETECT_MAX_SIDE. Images are never enlarged to it",
    )


class SnapshotRequest(PredictQuery):
    image: str = Field(
        description="base64 image bytes, or a data: URL such as data:image/jpeg;base64,...",
        min_length=1,
    )


class InputInfo(BaseModel):
    size: tuple[int, int]
    color: str
    scale: float
    offset: float


class ModelInfo(BaseModel):
    precision: str
    file: str
    bytes: int
    sha256: str
    loaded: bool
    error: str | None = None
    decision_threshold: float = Field(0.5, description="a face is with_mask when mask_probability >= this")
    metrics: dict[str, Any] = Field(default_factory=dict)
    input: InputInfo | None = Field(None, description="this model's own input (micro: 96x96)")


class DetectorInfo(BaseModel):
    name: str
    available: bool
    error: str | None = None
    score_threshold: float
    nms_threshold: float
    file: str | None = Field(None, description="the card's detector file, shipped in models/")
    sha256: str | None = None
    license: str | None = None
    runtime: str | None = Field(None, description="what runs YuNet: litert, onnxruntime or opencv")
    max_side: int | None = Field(None, description="default detector input side (MASKLITE_DETECT_MAX_SIDE)")


class ModelsResponse(BaseModel):
    name: str
    version: str
    labels: list[str]
    input: InputInfo
    crop_margin: float
    min_judgeable_face: int = Field(
        0, description="faces whose shorter box side (px) is below this are kept and answered 'unknown'"
    )
    min_face_size: int = Field(
        0, description="the same value as min_judgeable_face, under its old name (kept: /v1 is additive)"
    )
    default_model: str
    detector: DetectorInfo
    models: list[ModelInfo]


class LiveResponse(BaseModel):
    status: Literal["alive"] = "alive"
    uptime_s: float


class ReadyModel(BaseModel):
    loaded: bool
    error: str | None = None


class ReadyDetector(BaseModel):
    """Names and states only: unauthenticated routes never show server paths."""

    name: str
    file: str | None = Field(None, description="the detector's file name (no directory)")
    available: bool
    optional: bool = Field(False, description="MASKLITE_DETECTOR_OPTIONAL: ready without a detector")
    error: str | None = None
    sha256_ok: bool | None = None


class ReadyResponse(BaseModel):
    ready: bool
    phase: str = Field(description="starting, loading, warming, ready, degraded or failed")
    reasons: list[str] = Field(description="why not ready (empty when ready)")
    models: dict[str, ReadyModel]
    detector: ReadyDetector
    warnings: list[str] = Field(default_factory=list)
    threads: int
    inflight: int
    max_inflight: int


JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobAccepted(BaseModel):
    job_id: str
    state: JobState
    status_url: str
