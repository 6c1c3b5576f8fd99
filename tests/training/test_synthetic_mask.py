"""The synthetic mask generator: deterministic for a seed, and it covers the nose and the mouth."""

from __future__ import annotations

import numpy as np
import pytest

from training.synthetic_mask import KINDS, draw_mask, mask_outline

# five landmarks of a frontal face (right eye, left eye, nose, mouth right, mouth left), eye distance 40 px
FRONTAL = np.array([[80.0, 90.0], [120.0, 90.0], [100.0, 115.0], [84.0, 135.0], [116.0, 135.0]])


def _rotated(points: np.ndarray, degrees: float, scale: float, centre=(100.0, 110.0)) -> np.ndarray:
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - centre) @ rot.T * scale + centre


def _covered(landmarks: np.ndarray, seed: int, kind: str) -> np.ndarray:
    """Per pixel: True where the render does not depend on the background, i.e. the mask covers it. The two
    backgrounds are opposite pixel checkerboards: same brightness (the mask is shaded to match the face),
    different pixels."""
    yy, xx = np.mgrid[0:220, 0:200]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)
    a = draw_mask(np.dstack([board] * 3), landmarks, np.random.default_rng(seed), kind).astype(int)
    b = draw_mask(np.dstack([255 - board] * 3), landmarks, np.random.default_rng(seed), kind).astype(int)
    return np.abs(a - b).max(axis=2) < 128


def test_same_seed_same_mask_other_seed_other_mask() -> None:
    image = np.full((220, 200, 3), 120, np.uint8)
    first = draw_mask(image, FRONTAL, np.random.default_rng(7))
    again = draw_mask(image, FRONTAL, np.random.default_rng(7))
    other = draw_mask(image, FRONTAL, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, image)  # something was drawn, on a copy
    assert (image == 120).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("degrees", "scale"), [(0, 1.0), (15, 1.0), (-20, 0.6), (10, 1.8)])
def test_mask_covers_nose_and_mouth_not_eyes(kind: str, degrees: float, scale: float) -> None:
    landmarks = _rotated(FRONTAL, degrees, scale)
    for seed in range(5):
        covered = _covered(landmarks, seed, kind)
        for name, (x, y) in zip(("nose", "mouth right", "mouth left"), landmarks[2:], strict=True):
            assert covered[round(y), round(x)], (
                f"{kind} seed {seed}: {name} at ({x:.0f}, {y:.0f}) not covered"
            )
        for x, y in landmarks[:2]:
            assert not covered[round(y), round(x)], f"{kind} seed {seed}: an eye is covered"


def test_outline_follows_a_tilted_head() -> None:
    upright = mask_outline(FRONTAL, np.random.default_rng(0))
    tilted = mask_outline(_rotated(FRONTAL, 30, 1.0), np.random.default_rng(0))

    # the outline's main axis turns with the face (within the generator's few degrees of jitter)
    def axis(poly: np.ndarray) -> float:
        centred = poly - poly.mean(axis=0)
        _, _, vt = np.linalg.svd(centred)
        return float(np.degrees(np.arctan2(vt[0, 1], vt[0, 0])) % 180)

    turn = (axis(tilted) - axis(upright)) % 180
    assert 20 <= turn <= 40, turn
