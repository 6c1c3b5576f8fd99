"""Where assets live. Nothing here hard-codes ../shared: paths come from flags, env vars or models/."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"

# YuNet ships in models/ (opencv_zoo's "2023mar" file, byte for byte; provenance and licence in the card)
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
DEFAULT_DETECTOR_PATH = DEFAULT_MODELS_DIR / YUNET_FILENAME

ENV_DATA_DIR = "MASKLITE_DATA_DIR"
ENV_BACKBONE_WEIGHTS = "MASKLITE_BACKBONE_WEIGHTS"
ENV_DETECTOR_PATH = "MASKLITE_DETECTOR_PATH"
ENV_SCENES_DIR = "MASKLITE_SCENES_DIR"
# one root for the cross-source sets (macwinwin-scenes, wider-val-sample, rmfd-…, scenes-sample)
ENV_DATASETS_DIR = "MASKLITE_DATASETS_DIR"
# AIZOOTech's face-mask detector (.tflite), the public peer in the model card's cross-source tables
ENV_PEER_MODEL = "MASKLITE_PEER_MODEL"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def resolve_detector_path(
    explicit: Path | str | None = None, models_dir: Path | None = None, filename: str = YUNET_FILENAME
) -> Path:
    """The YuNet ONNX file: an explicit path, then $MASKLITE_DETECTOR_PATH, then `filename` (the card's
    detector file) in `models_dir`, then the copy shipped in models/.

    An explicit or environment path that does not exist is an error, never silently replaced by the
    shipped file: whoever set it meant that file.
    """
    candidate = Path(explicit) if explicit else env_path(ENV_DETECTOR_PATH)
    if candidate is not None:
        if not candidate.is_file():
            raise FileNotFoundError(f"face detector not found at {candidate} ({ENV_DETECTOR_PATH})")
        return candidate
    folders = [models_dir] if models_dir is not None else []
    for folder in [*folders, DEFAULT_MODELS_DIR]:
        if (folder / filename).is_file():
            return folder / filename
    raise FileNotFoundError(
        f"face detector {filename} missing from {models_dir or DEFAULT_MODELS_DIR} "
        f"(a complete checkout ships it in models/; or set {ENV_DETECTOR_PATH})"
    )
