"""Synthetic masks drawn from YuNet's five landmarks: the paired examples that take the shortcut away.

Every unmasked training face also appears with a mask (surgical, cloth, N95 or patterned; varied colour,
texture, shading and a slight misplacement), so that "mask" and "no mask" differ only in the mask, not
in the source, framing or image quality. Deterministic for a given generator state.

Geometry is built in a face frame: origin between the eyes, x along the eye line, unit = eye distance,
so a tilted or turned head gets a mask that follows it.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("surgical", "cloth", "n95", "patterned")
SURGICAL_COLOURS = ((128, 178, 214), (236, 238, 240), (150, 205, 180), (235, 175, 190), (40, 40, 44))


def mask_outline(landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) polygon, image coordinates, from the bridge of the nose to under the chin."""
    lm = np.asarray(landmarks, np.float64)
    right_eye, left_eye, nose, mouth_r, mouth_l = lm
    origin = (right_eye + left_eye) / 2
    ex = left_eye - right_eye
    d = max(float(np.hypot(*ex)), 1.0)
    ux = ex / d
    uy = np.array([-ux[1], ux[0]])
    to_local = lambda p: np.array([(p - origin) @ ux, (p - origin) @ uy]) / d  # noqa: E731
    n, m = to_local(nose), to_local((mouth_r + mouth_l) / 2)
    nose_y = max(n[1], 0.35)
    mouth_y = max(m[1], nose_y + 0.2)
    cx = (n[0] + m[0]) / 2 + rng.uniform(-0.08, 0.08)  # slight misplacement
    top = nose_y * rng.uniform(0.35, 0.6) + rng.uniform(-0.05, 0.05)
    bottom = max(mouth_y + (mouth_y - nose_y) * rng.uniform(1.3, 1.9), mouth_y + 0.35)
    half_top, half_mid = rng.uniform(0.8, 1.05), rng.uniform(0.9, 1.15)
    dip = rng.uniform(0.05, 0.18)  # the top edge sags below the bridge towards the cheeks
    xs = np.linspace(-1, 1, 9)
    top_edge = np.stack([cx + xs * half_top, top + dip * xs**2], axis=1)
    side = np.array([[cx + half_mid, mouth_y]])
    theta = np.linspace(0, np.pi, 15)
    chin = np.stack([cx + half_mid * np.cos(theta), mouth_y + (bottom - mouth_y) * np.sin(theta)], axis=1)
    local = np.concatenate([top_edge, side, chin[1:-1], [[cx - half_mid, mouth_y]]])
    angle = np.deg2rad(rng.uniform(-6, 6))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    local = (local - [cx, mouth_y]) @ rot.T * rng.uniform(0.93, 1.08) + [cx, mouth_y]
    return origin + d * (local[:, :1] * ux + local[:, 1:] * uy)


def _texture(kind: str, shape: tuple[int, int], d: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 RGB mask surface, before shading."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "surgical":
        colour = np.array(SURGICAL_COLOURS[rng.integers(len(SURGICAL_COLOURS))], np.float32)
        surface = np.broadcast_to(colour, (h, w, 3)).copy()
        period = max(2.0, d * rng.uniform(0.18, 0.3))  # pleats
        surface *= (1 - 0.12 * (np.sin(yy / period * 2 * np.pi) > 0.7))[..., None]
    elif kind == "n95":
        colour = np.array([rng.uniform(215, 250)] * 3, np.float32) - [
            0,
            rng.uniform(0, 10),
            rng.uniform(0, 25),
        ]
        surface = np.broadcast_to(colour, (h, w, 3)).copy()
        seam = np.abs(xx - w / 2) < max(1.0, d * 0.03)
        surface[seam] *= 0.82
    else:
        colour = rng.uniform(20, 235, 3).astype(np.float32)
        surface = np.broadcast_to(colour, (h, w, 3)).copy()
        if kind == "patterned":
            other = rng.uniform(20, 235, 3).astype(np.float32)
            period = max(3.0, d * rng.uniform(0.15, 0.45))
            style = rng.integers(3)
            if style == 0:  # stripes
                on = np.sin((xx * rng.uniform(-1, 1) + yy) / period * np.pi) > 0
            elif style == 1:  # checks
                on = ((xx // period + yy // period) % 2) == 0
            else:  # dots
                on = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 4) ** 2
            surface[on] = other
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(0.5, d * 0.02))
    surface += (grain * rng.uniform(3, 14 if kind == "cloth" else 6))[..., None]
    return surface


def draw_mask(
    rgb: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, kind: str | None = None
) -> np.ndarray:
    """A copy of `rgb` with a synthetic mask over the nose and mouth of the face at `landmarks`."""
    kind = kind or KINDS[rng.integers(len(KINDS))]
    poly = mask_outline(landmarks, rng)
    lm = np.asarray(landmarks, np.float64)
    d = max(float(np.hypot(*(lm[1] - lm[0]))), 1.0)
    pad = int(np.ceil(d * 0.5)) + 2
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + pad
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    out = rgb.copy()
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    roi = out[y0:y1, x0:x1].astype(np.float32)
    shape = roi.shape[:2]
    cover = np.zeros(shape, np.float32)
    cv2.fillPoly(
        cover, [np.round((poly - [x0, y0]) * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2
    )
    if kind == "surgical" and rng.random() < 0.7:  # ear loops
        thickness = max(1, round(d * 0.04))
        for k in (0, 8):
            end = poly[k] + (poly[k] - poly[4]) * rng.uniform(0.15, 0.35)
            a, b = np.round(poly[k] - [x0, y0]).astype(int), np.round(end - [x0, y0]).astype(int)
            cv2.line(cover, tuple(int(v) for v in a), tuple(int(v) for v in b), 1.0, thickness, cv2.LINE_AA)
    cover = cv2.GaussianBlur(cover, (0, 0), max(0.4, d * 0.025))
    surface = _texture(kind, shape, d, rng)
    # shading: the mask is lit like the face (its brightness), rounder in the middle, lit from one side
    centre = poly.mean(axis=0) - [x0, y0]
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    r = np.hypot((xx - centre[0]) / (d * 1.1), (yy - centre[1]) / (d * 1.3))
    light = rng.uniform(-0.25, 0.25)
    shade = (1 - 0.3 * np.clip(r, 0, 1.4) ** 2) * (1 + light * (xx - centre[0]) / (d * 1.1))
    face_level = float(roi.mean()) / 140.0
    surface *= (shade * np.clip(face_level, 0.35, 1.3) ** rng.uniform(0.5, 1.0))[..., None]
    blended = roi * (1 - cover[..., None]) + np.clip(surface, 0, 255) * cover[..., None]
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out
