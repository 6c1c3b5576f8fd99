"""Face crops (clean and augmented) -> frozen MobileNetV2 pooled features, cached under <work>/features.

The head then trains on these vectors in seconds. Crops use masklite.faces.crop_face and
masklite.preprocess (the service's exact code), so training sees what serving sees.
Augmented views (train only) mimic faces found in scene photos: jittered detector box, h-flip,
low resolution (down- then up-sampled), brightness/contrast.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from masklite.card import InputSpec
from masklite.faces import crop_face
from masklite.image import read_image_file
from masklite.paths import ENV_BACKBONE_WEIGHTS, env_path
from masklite.preprocess import preprocess, resize_crop
from training.config import FeatureConfig
from training.prepare import atomic_dir, commit_dir

FEATURE_DIM = 1280  # MobileNetV2 alpha 1.0 last conv channels


def input_spec(size: int) -> InputSpec:
    return InputSpec(size=(size, size), color="RGB", scale=1.0 / 127.5, offset=-1.0)


def backbone_weights(explicit: Path | str | None = None) -> str:
    """Local ImageNet weights file (flag, then $MASKLITE_BACKBONE_WEIGHTS), else Keras's "imagenet"."""
    path = Path(explicit) if explicit else env_path(ENV_BACKBONE_WEIGHTS)
    if path is None:
        return "imagenet"  # downloads: only where the internet is reachable
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    return str(path)


def build_backbone(size: int, alpha: float = 1.0, weights: str | None = None):
    """MobileNetV2 without top, global-average pooled, frozen, input already normalised to [-1, 1]."""
    import keras

    model = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=weights, pooling="avg"
    )
    model.trainable = False
    return model


def augment(
    rgb: np.ndarray,
    box: tuple[int, int, int, int],
    margin: float,
    rng: np.random.Generator,
    cfg: FeatureConfig,
) -> np.ndarray:
    """One random view of a face: jittered box -> crop_face -> flip / low-res / colour."""
    x, y, w, h = box
    height, width = rgb.shape[:2]
    scale = rng.uniform(*cfg.box_scale)
    nw, nh = max(2.0, w * scale), max(2.0, h * scale)
    cx = x + w / 2 + rng.uniform(-cfg.box_shift, cfg.box_shift) * w
    cy = y + h / 2 + rng.uniform(-cfg.box_shift, cfg.box_shift) * h
    x0, y0 = int(np.clip(round(cx - nw / 2), 0, width - 2)), int(np.clip(round(cy - nh / 2), 0, height - 2))
    jbox = (x0, y0, max(2, min(int(round(nw)), width - x0)), max(2, min(int(round(nh)), height - y0)))
    crop = crop_face(rgb, jbox, margin)
    if rng.random() < cfg.p_flip:
        crop = crop[:, ::-1]
    if rng.random() < cfg.p_lowres:
        side = int(rng.integers(cfg.lowres_side[0], cfg.lowres_side[1] + 1))
        ch, cw = crop.shape[:2]
        f = side / max(ch, cw)
        if f < 1.0:
            small = cv2.resize(
                crop, (max(1, round(cw * f)), max(1, round(ch * f))), interpolation=cv2.INTER_AREA
            )
            if rng.random() < 0.5:  # scene photos are usually JPEG-compressed as well
                ok, enc = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 90))])
                small = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED) if ok else small
            crop = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.p_color:
        alpha = rng.uniform(*cfg.contrast)
        beta = rng.uniform(-cfg.brightness, cfg.brightness)
        mean = crop.mean()
        crop = np.clip((crop.astype(np.float32) - mean) * alpha + mean + beta, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(crop)


def row_box(row: pd.Series) -> tuple[int, int, int, int]:
    return int(row.x), int(row.y), int(row.w), int(row.h)


class FeatureExtractor:
    """Batches uint8 crops at input size through the frozen backbone.

    engine "keras": TensorFlow (the shipped build). engine "litert": the backbone as a float32 TFLite model
    on LiteRT (XNNPACK): the same pooled features (max |diff| ~3e-5) at ~3.5x the throughput on 2 cores."""

    def __init__(self, cfg: FeatureConfig, weights: str | None, engine: str | None = None):
        engine = engine or cfg.engine
        self.spec = input_spec(cfg.input_size)
        self.model = build_backbone(cfg.input_size, cfg.alpha, weights)
        self.batch_size = cfg.batch_size
        self.engine = engine
        if engine == "litert":
            from masklite.classifier import Classifier
            from training.export import to_tflite_float32

            self._clf = Classifier(
                to_tflite_float32(self.model, cfg.input_size), num_threads=os.cpu_count() or 1
            )
        elif engine == "keras":
            import tensorflow as tf

            self._fn = tf.function(self._forward, reduce_retracing=True)
        else:
            raise ValueError(f"unknown feature engine {engine!r}")

    def _forward(self, x):
        return self.model(x, training=False)

    def __call__(self, crops_uint8: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(crops_uint8), self.batch_size):
            batch = preprocess(list(crops_uint8[i : i + self.batch_size]), self.spec)
            out.append(self._clf.predict(batch) if self.engine == "litert" else np.asarray(self._fn(batch)))
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


def extract_features(
    manifest: pd.DataFrame,
    data_dir: Path,
    out_dir: Path,
    cfg: FeatureConfig,
    crop_margin: float,
    weights: str | None,
    progress: bool = True,
) -> dict:
    """Writes <out>/{train,val,test}.npz (X, y, row, view) and crops_{split}.npz (clean uint8 crops),
    plus whole-image features (no detector) for the framing ablation: whole_{split}.npz."""
    import tensorflow as tf

    tf.random.set_seed(cfg.seed)
    labels = sorted(manifest.label.unique())
    extractor = FeatureExtractor(cfg, weights)
    size = (cfg.input_size, cfg.input_size)
    rng = np.random.default_rng(cfg.seed)
    tmp = atomic_dir(out_dir)
    try:
        counts = {}
        for split in ("train", "val", "test"):
            rows = manifest[manifest.split == split]
            views = 1 + (cfg.train_views if split == "train" else 0)
            crops, whole, y, row_ids, view_ids = [], [], [], [], []
            for ridx, row in tqdm(
                list(rows.iterrows()), desc=f"crops {split}", disable=not progress, unit="img"
            ):
                rgb = read_image_file(str(Path(data_dir) / row.rel))
                box = row_box(row)
                crops.append(resize_crop(crop_face(rgb, box, crop_margin), size))
                for _ in range(1, views):
                    crops.append(resize_crop(augment(rgb, box, crop_margin, rng, cfg), size))
                whole.append(resize_crop(rgb, size))
                y += [labels.index(row.label)] * views
                row_ids += [ridx] * views
                view_ids += list(range(views))
            crops_arr, whole_arr = np.stack(crops), np.stack(whole)
            feats = _batched(extractor, crops_arr, f"features {split}", progress)
            whole_feats = _batched(extractor, whole_arr, f"whole-image {split}", progress)
            y_arr, view_arr = np.array(y, np.int64), np.array(view_ids, np.int16)
            np.savez(tmp / f"{split}.npz", X=feats, y=y_arr, row=np.array(row_ids), view=view_arr)
            np.savez(
                tmp / f"whole_{split}.npz",
                X=whole_feats,
                y=y_arr[view_arr == 0],
                row=np.array(row_ids)[view_arr == 0],
            )
            np.savez_compressed(
                tmp / f"crops_{split}.npz",
                crops=crops_arr[view_arr == 0],
                y=y_arr[view_arr == 0],
                row=np.array(row_ids)[view_arr == 0],
            )
            counts[split] = {"images": len(rows), "vectors": len(feats)}
        meta = {
            "labels": labels,
            "config": asdict(cfg),
            "crop_margin": crop_margin,
            "counts": counts,
            "weights": os.path.basename(weights) if weights else None,
            "engine": "float32 TFLite backbone on LiteRT" if extractor.engine == "litert" else "Keras",
        }
        (tmp / "meta.json").write_text(pd.Series(meta).to_json(indent=2))
        commit_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _batched(extractor: FeatureExtractor, crops: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    out = []
    step = extractor.batch_size * 4
    for i in tqdm(range(0, len(crops), step), desc=desc, disable=not progress, unit="batch"):
        out.append(extractor(crops[i : i + step]))
    return np.concatenate(out).astype(np.float32)


def load_split(features_dir: Path, name: str) -> dict[str, np.ndarray]:
    path = Path(features_dir) / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training features` first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
