"""Face crops (clean and augmented) -> frozen MobileNetV2 pooled features, cached under <work>/features.

The head then trains on these vectors in seconds. Crops use masklite.faces.crop_face and
masklite.classifier.preprocess (the service's exact code), so training sees what serving sees.
Augmented views (train only) mimic faces found in scene photos: jittered detector box, h-flip,
low resolution (down- then up-sampled), brightness/contrast. TensorFlow is imported inside the functions
that run it, so that importing training stays light (the CLI's `--help`, tests without TensorFlow).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from masklite.card import INPUT_OFFSET, INPUT_SCALE, InputSpec
from masklite.classifier import Classifier, preprocess, resize_crop
from masklite.faces import crop_face
from masklite.files import staged_dir
from masklite.image import read_image_file
from masklite.paths import ENV_BACKBONE_WEIGHTS, env_path
from training.config import FeatureConfig
from training.export import to_tflite_float32
from training.prepare import load_manifest
from training.sources import FACES_FILE, SOURCE_FOLDERS, read_faces
from training.synthetic_mask import draw_mask

FEATURE_DIM = 1280  # MobileNetV2 alpha 1.0 last conv channels


def input_spec(size: int) -> InputSpec:
    return InputSpec(size=(size, size), color="RGB", scale=INPUT_SCALE, offset=INPUT_OFFSET)


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


SPLITS_OUT = ("train", "val", "test", "xval", "xtest", "scenes")
VIEW_KINDS = ("clean", "plain", "degraded", "masked")
TABLE = "table.csv"


def degrade(crop: np.ndarray, rng: np.random.Generator, cfg: FeatureConfig) -> np.ndarray:
    """Camera-quality damage, applied to both classes alike so that quality cannot predict the label:
    down to 12-48 px and back, blur, JPEG at quality 20-70, noise, gamma, colour casts, greyscale."""
    out = crop
    ch, cw = out.shape[:2]
    if rng.random() < cfg.p_degrade_lowres:
        f = int(rng.integers(cfg.degrade_side[0], cfg.degrade_side[1] + 1)) / max(ch, cw)
        if f < 1.0:
            small = cv2.resize(
                out, (max(1, round(cw * f)), max(1, round(ch * f))), interpolation=cv2.INTER_AREA
            )
            out = cv2.resize(
                small, (cw, ch), interpolation=(cv2.INTER_LINEAR, cv2.INTER_CUBIC)[rng.integers(2)]
            )
    if rng.random() < cfg.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 2.0) * max(ch, cw) / 128)
    img = out.astype(np.float32)
    if rng.random() < cfg.p_gamma:
        img = 255.0 * (img / 255.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < cfg.p_cast:
        img = img * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    if rng.random() < cfg.p_color:
        mean = img.mean()
        img = (img - mean) * rng.uniform(*cfg.contrast) + mean + rng.uniform(-cfg.brightness, cfg.brightness)
    if rng.random() < cfg.p_noise:
        img = img + rng.normal(0, rng.uniform(2, 12), img.shape).astype(np.float32)
    if rng.random() < cfg.p_grey:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_jpeg:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED) if ok else out
    return np.ascontiguousarray(out)


def face_table(work: Path, data_dir: Path) -> pd.DataFrame:
    """Every face the pipeline uses, one row each: the training folder's images first (row i is the
    manifest's row i), then the cross-source faces (training.sources). Columns: split, source, path,
    label, x y w h (crop box), size (shorter side of the face box), landmarks ("" or 10 numbers)."""
    manifest, report = load_manifest(work / "prepare")
    table = pd.DataFrame(
        {
            "split": manifest.split,
            "source": "chandrikadeb7",
            "group": manifest.group.astype(str),
            "path": [str(Path(data_dir) / r) for r in manifest.rel],
            "label": manifest.label,
            "x": manifest.x,
            "y": manifest.y,
            "w": manifest.w,
            "h": manifest.h,
            "size": np.minimum(manifest.w, manifest.h),
            "landmarks": manifest.get("landmarks", pd.Series([""] * len(manifest))).fillna(""),
        }
    )
    faces_path = work / "prepare" / FACES_FILE
    if faces_path.is_file():
        root = Path(report["cross_source"]["root"])
        faces = read_faces(faces_path)
        extra = pd.DataFrame(
            {
                "split": ["scenes" if f.part == "test" else f.part for f in faces],
                "source": [f.source for f in faces],
                "group": [f.group for f in faces],
                "path": [str(root / SOURCE_FOLDERS[f.source] / f.file) for f in faces],
                "label": [f.label for f in faces],
                "x": [f.box[0] for f in faces],
                "y": [f.box[1] for f in faces],
                "w": [f.box[2] for f in faces],
                "h": [f.box[3] for f in faces],
                "size": [f.size for f in faces],
                "landmarks": [" ".join(f"{v:.2f}" for v in f.landmarks) for f in faces],
            }
        )
        table = pd.concat([table, extra], ignore_index=True)
    return table


def _views(
    rgb: np.ndarray, row, margin: float, rng: np.random.Generator, cfg: FeatureConfig, label: str
) -> list[tuple[np.ndarray, str, str]]:
    """(crop, view kind, label) for one training face: clean, plain, degraded and synthetic-mask views."""
    box = row_box(row)
    out = [(crop_face(rgb, box, margin), "clean", label)]
    out += [(augment(rgb, box, margin, rng, cfg), "plain", label) for _ in range(cfg.plain_views)]
    out += [(_degraded(rgb, box, margin, rng, cfg), "degraded", label) for _ in range(cfg.train_views)]
    points = _landmarks(row.landmarks)
    if label == "without_mask" and points is not None:
        for k in range(cfg.mask_views):
            masked = draw_mask(rgb, points, rng)
            view = (
                augment(masked, box, margin, rng, cfg)
                if k % 2 == 0
                else _degraded(masked, box, margin, rng, cfg)
            )
            out.append((view, "masked", "with_mask"))
    return out


def _degraded(rgb, box, margin, rng, cfg: FeatureConfig) -> np.ndarray:
    geometric = FeatureConfig(**{**asdict(cfg), "p_lowres": 0.0, "p_color": 0.0})
    return degrade(augment(rgb, box, margin, rng, geometric), rng, cfg)


def _landmarks(value) -> np.ndarray | None:
    if not isinstance(value, str) or not value.strip():
        return None
    numbers = [float(v) for v in value.split()]
    return np.asarray(numbers, np.float32).reshape(5, 2) if len(numbers) == 10 else None


def extract_features(
    work: Path,
    data_dir: Path,
    out_dir: Path,
    cfg: FeatureConfig,
    crop_margin: float,
    weights: str | None,
    progress: bool = True,
) -> dict:
    """Writes <out>/{split}.npz (X, y, row, view, kind, source, size) and crops_{split}.npz (clean uint8
    crops at input size), for the training folder's splits and the cross-source parts, plus table.csv."""
    import tensorflow as tf

    tf.random.set_seed(cfg.seed)
    table = face_table(work, data_dir)
    labels = sorted(table.label.unique())
    extractor = FeatureExtractor(cfg, weights)
    size = (cfg.input_size, cfg.input_size)
    rng = np.random.default_rng(cfg.seed)
    with staged_dir(out_dir) as tmp:
        table.to_csv(tmp / TABLE, index_label="row")
        counts = {}
        for split in SPLITS_OUT:
            rows = table[table.split == split]
            if rows.empty:
                continue
            crops, y, row_ids, view_ids, kinds = [], [], [], [], []
            cache: tuple[str, np.ndarray] | None = None
            for ridx, row in tqdm(
                list(rows.iterrows()), desc=f"crops {split}", disable=not progress, unit="face"
            ):
                if cache is None or cache[0] != row.path:  # scene faces share their photo
                    cache = (row.path, read_image_file(row.path))
                rgb = cache[1]
                if split == "train":
                    views = _views(rgb, row, crop_margin, rng, cfg, row.label)
                else:
                    views = [(crop_face(rgb, row_box(row), crop_margin), "clean", row.label)]
                for v, (crop, kind, label) in enumerate(views):
                    crops.append(resize_crop(crop, size))
                    y.append(labels.index(label))
                    row_ids.append(ridx)
                    view_ids.append(v)
                    kinds.append(VIEW_KINDS.index(kind))
            crops_arr = np.stack(crops)
            feats = _batched(extractor, crops_arr, f"features {split}", progress)
            y_arr, view_arr, row_arr = np.array(y, np.int64), np.array(view_ids, np.int16), np.array(row_ids)
            np.savez(
                tmp / f"{split}.npz",
                X=feats,
                y=y_arr,
                row=row_arr,
                view=view_arr,
                kind=np.array(kinds, np.int8),
                source=table.source.to_numpy()[row_arr].astype(str),
                size=table["size"].to_numpy()[row_arr],
            )
            if split == "train":  # every view, for the fine-tuning stage (training.finetune)
                np.save(tmp / "views_train.npy", crops_arr)
            clean = view_arr == 0
            np.savez_compressed(
                tmp / f"crops_{split}.npz", crops=crops_arr[clean], y=y_arr[clean], row=row_arr[clean]
            )
            counts[split] = {"faces": len(rows), "vectors": len(feats)}
            counts[split]["by_kind"] = {
                k: int((np.array(kinds) == i).sum()) for i, k in enumerate(VIEW_KINDS)
            }
        meta = {
            "labels": labels,
            "config": asdict(cfg),
            "crop_margin": crop_margin,
            "counts": counts,
            "weights": os.path.basename(weights) if weights else None,
            "engine": "float32 TFLite backbone on LiteRT" if extractor.engine == "litert" else "Keras",
        }
        (tmp / "meta.json").write_text(pd.Series(meta).to_json(indent=2))
    return meta


def _batched(extractor: FeatureExtractor, crops: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    out = []
    step = extractor.batch_size * 4
    for i in tqdm(range(0, len(crops), step), desc=desc, disable=not progress, unit="batch"):
        out.append(extractor(crops[i : i + step]))
    return np.concatenate(out).astype(np.float32)


def load_table(features_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(features_dir) / TABLE, index_col="row", keep_default_na=False)


def load_split(features_dir: Path, name: str) -> dict[str, np.ndarray]:
    path = Path(features_dir) / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training features` first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
