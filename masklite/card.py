"""The model card: the single source of truth for labels, preprocessing and the shipped files.

Training writes it, the service reads it, so the two cannot drift.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from masklite.files import write_text_atomic
from masklite.paths import YUNET_FILENAME, sha256_file

CARD_FILENAME = "model_card.json"
MASK_LABEL = "with_mask"
# The answer for a face smaller than the card's `min_judgeable_face`: too small to judge, not a guess.
UNKNOWN_LABEL = "unknown"
# the defaults of the card's fields below, one definition each (training and the detector import them)
INPUT_SCALE, INPUT_OFFSET = 1.0 / 127.5, -1.0  # x = pixel / 127.5 - 1: MobileNetV2's [-1, 1]
DETECTOR_SCORE_THRESHOLD, DETECTOR_NMS_THRESHOLD = 0.6, 0.3


class InputSpec(BaseModel):
    """How a face crop becomes the model input: x = pixel * scale + offset, in `color` channel order."""

    size: tuple[int, int] = Field(description="[height, width] of the model input")
    color: Literal["RGB", "BGR"] = "RGB"
    scale: float = INPUT_SCALE
    offset: float = INPUT_OFFSET


YUNET_LICENSE = "Apache-2.0 (libfacedetection.train); MIT as redistributed by opencv_zoo"
YUNET_SOURCE = (
    "ShiqiYu/libfacedetection.train onnx/yunet_s_640_640.onnx (commit 2b5e61dee, 2022-12-23); "
    "byte-identical to opencv_zoo models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)


class DerivedDetectorFile(BaseModel):
    """A detector file made from the upstream YuNet for one runtime (tools/convert_yunet.py), in models/."""

    file: str
    sha256: str
    provenance: str


_UPSTREAM = "the upstream YuNet face_detection_yunet_2023mar.onnx (opencv_zoo; sha256 8f2383e4…fa4)"
# Same weights, same scores; each runs at the image's own aspect ratio. Checked against the upstream file
# and OpenCV's detector by tests/masklite/test_yunet.py.
DERIVED_DETECTOR_FILES = {
    "litert": DerivedDetectorFile(
        file="face_detection_yunet_2023mar_dynamic_float32.tflite",
        sha256="45cbc730d5e05a9f1a961791226bd1e0160c70f797240e13affdd6008b04b076",
        provenance=f"derived from {_UPSTREAM} by tools/convert_yunet.py tflite (onnx 1.23, onnx2tf 1.28.8, "
        "tensorflow 2.21): input height/width made symbolic, each head cut before its Transpose+Reshape "
        "(outputs: the 12 conv maps, sigmoid kept on cls/obj), float32 TFLite; weights unchanged",
    ),
    "onnxruntime": DerivedDetectorFile(
        file="face_detection_yunet_2023mar_dynamic.onnx",
        sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
        provenance=f"derived from {_UPSTREAM} by tools/convert_yunet.py dynamic (onnx 1.23): input dims "
        "640x640 -> symbolic height x width, recorded shapes dropped; weights and nodes unchanged; outputs "
        "checked equal to the upstream file at 640x640",
    ),
}


class DetectorSpec(BaseModel):
    """The face detector shipped in models/ beside the classifiers. The provenance fields default to the
    shipped YuNet so a re-export (training builds this from the prepare report) keeps them. file/sha256:
    the upstream YuNet (OpenCV's runtime loads it); runtime_files: what LiteRT / onnxruntime load."""

    name: str = "yunet"
    file: str = YUNET_FILENAME
    sha256: str | None = None
    score_threshold: float = DETECTOR_SCORE_THRESHOLD
    nms_threshold: float = DETECTOR_NMS_THRESHOLD
    bytes: int | None = 232_589
    license: str = YUNET_LICENSE
    license_file: str = "face_detection_yunet_LICENSE.txt"
    source: str = YUNET_SOURCE
    # which runtime serves it; all decode the same way, so the thresholds above mean the same on each
    runtime: Literal["litert", "onnxruntime", "opencv"] = "litert"
    runtime_files: dict[str, DerivedDetectorFile] = Field(
        default_factory=lambda: dict(DERIVED_DETECTOR_FILES)
    )

    # what training must carry over when it regenerates the card (it only measures the fields above them)
    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("runtime", "runtime_files")


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    file: str
    sha256: str
    bytes: int
    precision: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    # A face is "with_mask" when its mask probability is at least this (chosen on cross-source validation)
    decision_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    # Only for a model whose input differs from the card default (the micro model: smaller size).
    input: InputSpec | None = Field(default=None, exclude_if=lambda v: v is None)


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = "masklite-mobilenetv2"
    version: str = "0"
    labels: list[str]
    input: InputSpec
    crop_margin: float = Field(ge=0.0, le=1.0, description="box grown by this fraction of its side, per side")
    # Not the API's `min_face_size` query parameter (that one drops faces): a face below this is kept and
    # answered `unknown`. Cards written before the rename call it `min_face_size`; both keys load.
    min_judgeable_face: int = Field(
        default=0,
        ge=0,
        validation_alias=AliasChoices("min_judgeable_face", "min_face_size"),
        description="faces whose box's shorter side (original px) is below this are 'unknown'",
    )
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    models: dict[str, ModelEntry]
    dataset: dict[str, Any] = Field(default_factory=dict)
    splits: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)

    @property
    def mask_index(self) -> int:
        return self.labels.index(MASK_LABEL)

    def model_input(self, precision: str | None = None) -> InputSpec:
        """The one lookup of a model's input: its entry's own `input` when it has one (micro: smaller),
        else the card default (also for None or a precision the card does not list)."""
        entry = self.models.get(precision) if precision is not None else None
        return entry.input if entry is not None and entry.input is not None else self.input

    def precision_of(self, file_name: str) -> str | None:
        """The precision whose model file is `file_name` (a classifier loaded by path), or None."""
        return next((p for p, e in self.models.items() if e.file == file_name), None)


def load_card(models_dir: Path) -> ModelCard:
    return ModelCard.model_validate(json.loads((models_dir / CARD_FILENAME).read_text()))


def save_card(card: ModelCard, models_dir: Path) -> Path:
    text = json.dumps(card.model_dump(mode="json"), indent=2) + "\n"
    return write_text_atomic(models_dir / CARD_FILENAME, text)


class ChecksumError(ValueError):
    pass


def verify_model_file(card: ModelCard, models_dir: Path, precision: str) -> Path:
    """Return the model path after checking it exists and matches the card's sha256."""
    path = _model_path(card, models_dir, precision)
    _check_model_sha256(card, precision, path, sha256_file(path))
    return path


def read_model_file(card: ModelCard, models_dir: Path, precision: str) -> tuple[Path, bytes]:
    """The model's path and bytes, read once and checked against the card's sha256: the bytes a caller
    loads are exactly the bytes that were checked."""
    path = _model_path(card, models_dir, precision)
    content = path.read_bytes()
    _check_model_sha256(card, precision, path, hashlib.sha256(content).hexdigest())
    return path, content


def _model_path(card: ModelCard, models_dir: Path, precision: str) -> Path:
    path = models_dir / card.models[precision].file
    if not path.is_file():
        raise FileNotFoundError(f"model file for {precision!r} missing: {path}")
    return path


def _check_model_sha256(card: ModelCard, precision: str, path: Path, actual: str) -> None:
    expected = card.models[precision].sha256
    if actual != expected:
        raise ChecksumError(f"{path.name}: sha256 {actual[:12]}… does not match the card ({expected[:12]}…)")
