"""Scoring helpers of the cross-source evaluation: intervals, the unknown-is-wrong rule, the choices."""

from __future__ import annotations

import numpy as np
import pytest

from training.crosssource import (
    PROBE_SIZES,
    by_size,
    choose_min_face,
    choose_threshold,
    decide,
    recall_block,
    shrink_to_face_size,
    wilson,
)

LABELS = ["with_mask", "without_mask"]


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson(95, 100)
    assert lo == pytest.approx(0.8882, abs=1e-3) and hi == pytest.approx(0.9785, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert all(np.isnan(v) for v in wilson(0, 0))


def test_unknown_counts_as_wrong_and_lowers_coverage() -> None:
    y = np.array([0, 0, 1, 1])
    pred = decide(np.array([0.9, 0.9, 0.1, 0.1]), np.array([50, 10, 50, 10]), threshold=0.5, min_face=20)
    np.testing.assert_array_equal(pred, [0, -1, 1, -1])
    block = recall_block(y, pred, LABELS)
    assert block["per_class"]["with_mask"]["recall"] == 0.5
    assert block["coverage"] == 0.5 and block["balanced_accuracy"] == 0.5
    sizes = by_size(y, pred, np.array([50, 10, 50, 10]), LABELS)
    assert sizes["<24"]["coverage"] == 0.0 and sizes["48-96"]["coverage"] == 1.0


def test_threshold_is_the_middle_of_the_best_plateau() -> None:
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0.7, 1.0, 50), np.linspace(0.0, 0.3, 50)])  # separable in (0.3, 0.7)
    chosen = choose_threshold(y, p)
    assert chosen["balanced_accuracy"] == 1.0
    assert 0.45 <= chosen["threshold"] <= 0.55  # the middle of the gap, not its edge
    assert chosen["plateau"][0] <= 0.31 and chosen["plateau"][1] >= 0.69


def test_shrunk_faces_lose_detail_and_keep_shape() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    tiny, big = shrink_to_face_size(crops, 8, 0.2), shrink_to_face_size(crops, 90, 0.2)
    assert tiny.shape == crops.shape
    assert np.abs(tiny.astype(int) - crops).mean() > np.abs(big.astype(int) - crops).mean()


def test_min_face_is_where_the_probe_stays_good() -> None:
    """A classifier that needs detail: it reads the mask from high-frequency energy, lost when shrunk."""
    rng = np.random.default_rng(1)
    masked = rng.integers(0, 256, (20, 128, 128, 3), dtype=np.uint8)  # busy: "mask texture"
    plain = np.full((20, 128, 128, 3), 128, np.uint8)
    crops, y = np.concatenate([masked, plain]), np.array([0] * 20 + [1] * 20)

    def p_mask(c: np.ndarray) -> np.ndarray:
        return (np.abs(np.diff(c.astype(float), axis=2)).mean(axis=(1, 2, 3)) > 4).astype(float)

    got = choose_min_face(y, crops, p_mask, 0.5, 0.2, np.full(40, 100))
    assert got["min_face_size"] in PROBE_SIZES
    balanced = {r["face_px"]: r["balanced"] for r in got["probe"]}
    assert all(balanced[s] >= 0.9 for s in PROBE_SIZES if s >= got["min_face_size"])
    smaller = [s for s in PROBE_SIZES if s < got["min_face_size"]]
    assert not smaller or balanced[max(smaller)] < 0.9
