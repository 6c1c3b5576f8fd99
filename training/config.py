"""Defaults in one place. Every value here is recorded in the model card (`training` section)."""

from __future__ import annotations

from dataclasses import dataclass

from masklite.card import DETECTOR_NMS_THRESHOLD, DETECTOR_SCORE_THRESHOLD
from masklite.paths import REPO_ROOT

DEFAULT_WORK_DIR = REPO_ROOT / "work"
DEFAULT_REPORTS_DIR = REPO_ROOT / "reports"


@dataclass
class PrepareConfig:
    crop_margin: float = 0.2
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    split_seed: int = 0
    detector_score_threshold: float = DETECTOR_SCORE_THRESHOLD
    detector_nms_threshold: float = DETECTOR_NMS_THRESHOLD


@dataclass
class FeatureConfig:
    input_size: int = 128
    alpha: float = 1.0
    # views per training face, on top of the clean one: "plain" (round 1: jittered box, flip, low-res,
    # colour), "degraded" (jittered box, flip, then training.features.degrade), and for every unmasked face
    # with landmarks "masked" synthetic-mask views (half plain, half degraded, so that image quality is
    # spread over both classes alike)
    plain_views: int = 2
    train_views: int = 3
    mask_views: int = 2
    seed: int = 0
    # augmentation probabilities / ranges (see training/features.py:augment)
    p_flip: float = 0.5
    p_lowres: float = 0.5
    lowres_side: tuple[int, int] = (14, 48)
    p_color: float = 0.8
    brightness: float = 40.0
    contrast: tuple[float, float] = (0.65, 1.35)
    box_shift: float = 0.10
    box_scale: tuple[float, float] = (0.8, 1.4)
    # degradation (both classes alike): down to this many px and back, blur, JPEG, noise, gamma, casts, grey
    degrade_side: tuple[int, int] = (12, 48)
    p_degrade_lowres: float = 0.6
    p_blur: float = 0.3
    p_jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (20, 70)
    p_noise: float = 0.3
    p_gamma: float = 0.5
    p_cast: float = 0.4
    p_grey: float = 0.1
    batch_size: int = 64
    # backbone runtime for the cached features: "keras" (TensorFlow; the shipped build) or "litert" (the
    # float32 TFLite backbone on XNNPACK: same features to ~3e-5, ~3x faster on 2 cores; the head then
    # trains to a slightly different optimum, see MODEL_CARD.md "variance")
    engine: str = "keras"


@dataclass
class HeadConfig:
    # number of Dense layers INCLUDING the softmax output layer (depth 1 = logistic regression on the
    # pooled backbone features; the original design's 4 = three hidden layers + the output)
    depth: int = 4
    width: int = 128
    dropout: float = 0.3
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    label_smoothing: float = 0.0
    seed: int = 0
