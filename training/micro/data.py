"""Face crops at the micro model's input sizes, and the teacher's soft labels on them, cached once.

Reuses the main pipeline's outputs, never re-derives them:
  * the train views are the very crops the main model trained on (<work>/features/views_train.npy:
    clean, plain, degraded and synthetic-mask views of every training face, all sources), resized to the
    micro sizes; val, test and xval are the clean crops (crops_<split>.npz);
  * the teacher is the shipped main model: the float32 TFLite file, run through LiteRT on the same
    128 px views (the fine-tuned backbone means cached pooled features no longer apply). Its logits are
    log-probabilities (softmax-equivalent). `check_teacher` compares them with the Keras model on a few
    views (the maximum |difference| goes into the cache meta).

Outputs (<work>/micro/):
    views_{train,val,test,xval}.npz   crops_<size> (N, s, s, 3) uint8 for each size, y, row, view
    teacher/teacher.npz               logits (N_train_views, C) of the teacher, aligned with views_train
    teacher/teacher.json              teacher file sha256, alignment check
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masklite.card import load_card, verify_model_file
from masklite.classifier import Classifier, normalize, resize_crop
from masklite.files import atomic_path, staged_dir
from training.artifacts import composed_model, feature_config, load_crops, load_train_views
from training.features import input_spec, load_split

MICRO_DIR = "micro"
SPLITS = ("train", "val", "test", "xval")


def views_path(work: Path, split: str) -> Path:
    return work / MICRO_DIR / f"views_{split}.npz"


def build_views(work: Path, data_dir: Path, sizes: tuple[int, ...], progress: bool = True) -> dict:
    """The main pipeline's cached crops at `sizes` plus the main input size (`data_dir` is not read: the
    crops are cached already)."""
    del data_dir
    fcfg = feature_config(work)
    main = fcfg.input_size
    all_sizes = tuple(sorted(set(sizes) | {main}))
    out_dir = work / MICRO_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in SPLITS:
        feats = load_split(work / "features", split)
        if split == "train":
            base = load_train_views(work)
            y, rows, views = feats["y"], feats["row"], feats["view"]
        else:
            base, y, rows = load_crops(work, split)
            views = np.zeros(len(y), np.int16)
        arrays = {}
        for size in all_sizes:
            if size == main:
                arrays[f"crops_{size}"] = np.asarray(base)
                continue
            desc = f"micro {split} {size}px"
            resized = [resize_crop(c, (size, size)) for c in tqdm(base, desc=desc, disable=not progress)]
            arrays[f"crops_{size}"] = np.stack(resized)
        with atomic_path(views_path(work, split)) as tmp:
            np.savez(tmp, y=y, row=rows, view=views, **arrays)
        counts[split] = len(y)
    meta = {"sizes": list(all_sizes), "counts": counts, "feature_config": fcfg.__dict__}
    (out_dir / "views.json").write_text(json.dumps(meta, indent=1, default=list) + "\n")
    return meta


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


def teacher_logits(work: Path, models_dir: Path) -> tuple[np.ndarray, dict]:
    """The shipped float32 model's log-probabilities on every cached train view (LiteRT, 2 threads)."""
    card = load_card(models_dir)
    path = verify_model_file(card, models_dir, "float32")
    clf = Classifier(path, num_threads=2)
    views = load_train_views(work)
    spec = input_spec(views.shape[1])
    batches = range(0, len(views), 256)
    probs = np.concatenate(
        [clf.predict(normalize(np.asarray(views[i : i + 256]), spec)) for i in tqdm(batches, desc="teacher")]
    )
    logits = np.log(np.clip(probs, 1e-7, 1.0)).astype(np.float32)
    info = {"teacher": path.name, "teacher_sha256": card.models["float32"].sha256, "n": int(len(logits))}
    return logits, info


def check_teacher(work: Path, weights: str, logits: np.ndarray, n: int = 48, seed: int = 0) -> dict:
    """Run the full Keras teacher (fine-tuned backbone + head) on train views, clean and augmented, and
    compare with the cached soft labels of the float32 TFLite teacher."""
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


def build_teacher(work: Path, weights: str, models_dir: Path) -> dict:
    logits, info = teacher_logits(work, models_dir)
    info["check"] = check_teacher(work, weights, logits)
    if info["check"]["max_abs_prob_diff"] > 1e-3:
        raise ValueError(f"cached teacher labels do not match the Keras teacher: {info['check']}")
    y = load_views(work, "train", feature_config(work).input_size)["y"]
    info["teacher_train_accuracy"] = float((logits.argmax(1) == y).mean())
    with staged_dir(work / MICRO_DIR / "teacher") as tmp:
        np.savez(tmp / "teacher.npz", logits=logits)
        (tmp / "teacher.json").write_text(json.dumps(info, indent=1) + "\n")
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
