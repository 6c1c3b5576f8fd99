"""Where external assets live. Nothing here hard-codes ../shared: paths come from flags or env vars."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"

# Official YuNet release (opencv_zoo); byte-identical to the file in ../shared/weights.
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILENAME
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

ENV_DATA_DIR = "MASKLITE_DATA_DIR"
ENV_BACKBONE_WEIGHTS = "MASKLITE_BACKBONE_WEIGHTS"
ENV_DETECTOR_PATH = "MASKLITE_DETECTOR_PATH"
ENV_SCENES_DIR = "MASKLITE_SCENES_DIR"
# one root for the cross-source sets (macwinwin-scenes, wider-val-sample, rmfd-…, scenes-sample)
ENV_DATASETS_DIR = "MASKLITE_DATASETS_DIR"
# AIZOOTech's face-mask detector (.tflite), the public peer in the model card's cross-source tables
ENV_PEER_MODEL = "MASKLITE_PEER_MODEL"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def resolve_detector_path(explicit: Path | str | None = None, download_to: Path | None = None) -> Path:
    """Find the YuNet ONNX file: explicit path, then $MASKLITE_DETECTOR_PATH, then an optional download.

    The download only happens when `download_to` is given (a machine with internet); the file is
    sha256-pinned so a tampered or truncated download is refused.
    """
    candidate = Path(explicit) if explicit else env_path(ENV_DETECTOR_PATH)
    if candidate is not None:
        if not candidate.is_file():
            raise FileNotFoundError(f"face detector not found at {candidate}")
        return candidate
    if download_to is None:
        raise FileNotFoundError(f"no face detector: set {ENV_DETECTOR_PATH} to the YuNet .onnx file")
    target = download_to / YUNET_FILENAME
    if not target.is_file():
        download_detector(target)
    return target


def download_detector(target: Path, url: str = YUNET_URL, timeout: float = 60.0) -> Path:
    """Download YuNet to `target` (from the official URL or a mirror); refuse bytes that miss the pin."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out)
        if sha256_file(tmp) != YUNET_SHA256:
            raise ValueError(f"downloaded {url} does not match the pinned sha256")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.rename(target)
    return target
