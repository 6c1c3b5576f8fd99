"""Face crops at the micro model's input sizes, and the teacher's soft labels on them, cached once.

Reuses the main pipeline's outputs, never re-derives them:
  * the split and boxes come from <work>/prepare/manifest.csv (training.prepare);
  * crops are made by masklite.faces.crop_face + masklite.preprocess.resize_crop (the service's code);
  * augmented train views replay training.features.augment with the SAME seeded generator, in the SAME
    order, as `python -m training features` did, so view k of row r here is the very view whose frozen
    MobileNetV2 features are cached in <work>/features/train.npz, only resized to the micro size.
That alignment makes the teacher's soft labels free: teacher = the main model's Keras form
(frozen backbone + trained head), and its backbone output for each view is already cached, so the
soft labels are the head applied to those features. `check_teacher` re-runs the full Keras teacher on a
few replayed views at 128 px to prove the alignment (the maximum |difference| goes into the cache meta).

Outputs (<work>/micro/):
    views_{train,val,test}.npz   crops_<size> (N, s, s, 3) uint8 for each size, y, row, view
    teacher.npz                  logits (N_train_views, C) of the teacher, aligned with views_train
    teacher.json                 head sha256, alignment check
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from masklite.faces import crop_face
from masklite.image import read_image_file
from masklite.paths import sha256_file
from masklite.preprocess import resize_crop
from training.config import FeatureConfig
from training.features import augment, load_split, row_box
from training.prepare import atomic_dir, commit_dir, load_manifest

MICRO_DIR = "micro"
SPLITS = ("train", "val", "test")


def feature_config(work: Path) -> FeatureConfig:
    path = work / "features" / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training features` first")
    cfg = json.loads(path.read_text())["config"]
    return FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})


def views_path(work: Path, split: str) -> Path:
    return work / MICRO_DIR / f"views_{split}.npz"


def build_views(work: Path, data_dir: Path, sizes: tuple[int, ...], progress: bool = True) -> dict:
    """Replays `training.features.extract_features`' crop loop (same rng, same order) at `sizes`, plus the
    main input size, and checks the clean main-size crops are byte-identical to the cached ones."""
    manifest, report = load_manifest(work / "prepare")
    fcfg = feature_config(work)
    margin = float(report["config"]["crop_margin"])
    labels = sorted(manifest.label.unique())
    main = fcfg.input_size
    all_sizes = tuple(sorted(set(sizes) | {main}))
    rng = np.random.default_rng(fcfg.seed)  # one generator across splits, as extract_features uses it
    out_dir = work / MICRO_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in SPLITS:
        rows = manifest[manifest.split == split]
        views = 1 + (fcfg.train_views if split == "train" else 0)
        crops: dict[int, list[np.ndarray]] = {s: [] for s in all_sizes}
        y, row_ids, view_ids = [], [], []
        for ridx, row in tqdm(
            list(rows.iterrows()), desc=f"micro crops {split}", disable=not progress, unit="img"
        ):
            rgb = read_image_file(str(Path(data_dir) / row.rel))
            box = row_box(row)
            raw = [crop_face(rgb, box, margin)] + [
                augment(rgb, box, margin, rng, fcfg) for _ in range(1, views)
            ]
            for crop in raw:
                for s in all_sizes:
                    crops[s].append(resize_crop(crop, (s, s)))
            y += [labels.index(row.label)] * views
            row_ids += [ridx] * views
            view_ids += list(range(views))
        arrays = {f"crops_{s}": np.stack(c) for s, c in crops.items()}
        y_arr, row_arr, view_arr = np.array(y, np.int64), np.array(row_ids), np.array(view_ids, np.int16)
        _check_alignment(work, split, arrays[f"crops_{main}"], y_arr, row_arr, view_arr)
        tmp = views_path(work, split).with_suffix(".tmp.npz")
        np.savez(tmp, y=y_arr, row=row_arr, view=view_arr, **arrays)
        tmp.replace(views_path(work, split))
        counts[split] = len(y_arr)
    meta = {
        "sizes": list(all_sizes),
        "labels": labels,
        "counts": counts,
        "crop_margin": margin,
        "feature_config": fcfg.__dict__,
    }
    (out_dir / "views.json").write_text(json.dumps(meta, indent=1, default=list) + "\n")
    return meta


def _check_alignment(
    work: Path, split: str, main_crops: np.ndarray, y: np.ndarray, rows: np.ndarray, views: np.ndarray
) -> None:
    with np.load(work / "features" / f"crops_{split}.npz") as z:
        cached, cached_rows = z["crops"], z["row"]
    clean = views == 0
    if not (np.array_equal(rows[clean], cached_rows) and np.array_equal(main_crops[clean], cached)):
        raise ValueError(
            f"{split}: replayed crops differ from <work>/features/crops_{split}.npz; "
            "re-run `python -m training features` and then the micro build"
        )
    feats = load_split(work / "features", split)
    if not (
        np.array_equal(feats["row"], rows)
        and np.array_equal(feats["view"], views)
        and np.array_equal(feats["y"], y)
    ):
        raise ValueError(f"{split}: view order differs from <work>/features/{split}.npz")


def load_views(work: Path, split: str, size: int) -> dict[str, np.ndarray]:
    path = views_path(work, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training micro --stage data` first")
    with np.load(path) as z:
        key = f"crops_{size}"
        if key not in z.files:
            raise FileNotFoundError(
                f"{path} has no {size} px crops (has {[k for k in z.files if 'crops' in k]})"
            )
        return {"crops": z[key], "y": z["y"], "row": z["row"], "view": z["view"]}


def teacher_logits(work: Path) -> tuple[np.ndarray, dict]:
    """The main model's logits on every cached train view: head(cached frozen-backbone features)."""
    import keras

    head_path = work / "train" / "head.keras"
    if not head_path.is_file():
        raise FileNotFoundError(f"{head_path} not found: run `python -m training train` first")
    head = keras.models.load_model(head_path)
    feats = load_split(work / "features", "train")
    logits = head_logits(head, feats["X"])
    return logits, {"head": str(head_path), "head_sha256": sha256_file(head_path), "n": int(len(logits))}


def head_logits(head, x: np.ndarray) -> np.ndarray:
    """Pre-softmax outputs of the head (the softmax layer's input), exact rather than log(probability)."""
    import keras

    last = head.get_layer("probs")
    penultimate = keras.Model(head.input, last.input)
    hidden = np.asarray(penultimate.predict(x, batch_size=1024, verbose=0))
    kernel, bias = (np.asarray(w) for w in last.get_weights())
    return (hidden @ kernel + bias).astype(np.float32)


def check_teacher(work: Path, weights: str, logits: np.ndarray, n: int = 48, seed: int = 0) -> dict:
    """Run the full Keras teacher (backbone + head) on replayed train views, clean and augmented, and
    compare with the cached-feature soft labels."""
    from masklite.preprocess import normalize
    from training.features import input_spec
    from training.stages import composed_model

    model, meta = composed_model(work, weights)
    size = int(meta["config"]["input_size"])
    views = load_views(work, "train", size)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(views["y"]), size=min(n, len(views["y"])), replace=False))
    probs = np.asarray(model.predict(normalize(views["crops"][idx], input_spec(size)), verbose=0))
    cached = softmax(logits[idx])
    return {
        "views_checked": int(len(idx)),
        "augmented_views_checked": int((views["view"][idx] > 0).sum()),
        "max_abs_prob_diff": float(np.abs(probs - cached).max()),
        "label_agreement": float((probs.argmax(1) == cached.argmax(1)).mean()),
    }


def build_teacher(work: Path, weights: str) -> dict:
    logits, info = teacher_logits(work)
    info["check"] = check_teacher(work, weights, logits)
    if info["check"]["max_abs_prob_diff"] > 1e-3:
        raise ValueError(f"cached teacher labels do not match the Keras teacher: {info['check']}")
    y = load_views(work, "train", feature_config(work).input_size)["y"]
    info["teacher_train_accuracy"] = float((logits.argmax(1) == y).mean())
    tmp = atomic_dir(work / MICRO_DIR / "teacher")
    try:
        np.savez(tmp / "teacher.npz", logits=logits)
        (tmp / "teacher.json").write_text(json.dumps(info, indent=1) + "\n")
        commit_dir(tmp, work / MICRO_DIR / "teacher")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def load_teacher(work: Path) -> np.ndarray:
    path = work / MICRO_DIR / "teacher" / "teacher.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training micro --stage teacher` first")
    with np.load(path) as z:
        return z["logits"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def split_counts(manifest: pd.DataFrame) -> dict:
    return {s: int((manifest.split == s).sum()) for s in SPLITS}
