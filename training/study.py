"""Reduction studies (issue #4 part 1): accuracy vs dense-head depth and vs epochs, float32 and int8.

Each configuration trains a head on the cached frozen-backbone features (seconds, not minutes).
float32 accuracy: the Keras head on float backbone features (what the float32 TFLite computes, to ~1e-5).
int8 accuracy: the head converted to full-int8 TFLite, run through masklite.classifier.Classifier on the
features of the *int8* backbone (the shipped backbone quantisation, computed once and cached). This is
an approximation of converting every configuration end to end: it re-quantises the pooled features at the
head's own input scale instead of the full model's. The study checks it against the shipped int8 model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from ai_edge_litert.interpreter import Interpreter
from matplotlib.figure import Figure  # the object API: no pyplot state, no display backend
from tqdm import tqdm

from masklite.classifier import Classifier, dequantize, normalize, quantize
from masklite.markdown import markdown_table
from masklite.paths import DEFAULT_MODELS_DIR
from training.artifacts import crops_path, load_crops, load_features_meta, representative_batch
from training.config import HeadConfig
from training.export import head_to_tflite_int8, to_tflite_int8
from training.features import build_backbone, input_spec, load_split
from training.head import train_head

GRIDS = {
    "layers": {"param": "depth", "values": [1, 2, 4, 8], "fixed": {"epochs": 15}},
    "epochs": {"param": "epochs", "values": [5, 10, 15, 20], "fixed": {"depth": 4}},
}
REP_SAMPLES = 200
CROSS_PARTS = ("xval", "xtest")  # scored too when the build had the cross-source sets


def _balanced(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, without_mask recall) at the argmax; label index 1 is without_mask."""
    recalls = [float((pred[y == k] == k).mean()) for k in (0, 1) if (y == k).any()]
    return float(np.mean(recalls)), float((pred[y == 1] == 1).mean())


def int8_backbone_features(work: Path, weights: str) -> dict[str, np.ndarray]:
    """Pooled features of the full-int8 backbone (same calibration data as the shipped model), cached."""
    cache = work / "study" / "int8_backbone.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    meta = load_features_meta(work)
    size = int(meta["config"]["input_size"])
    spec = input_spec(size)
    backbone = build_backbone(size, meta["config"]["alpha"], weights)
    rep = representative_batch(work, meta, n=REP_SAMPLES)
    clf = Classifier(to_tflite_int8(backbone, size, rep), num_threads=2)
    out = {}
    for split in ("test", "val", *CROSS_PARTS):
        if not crops_path(work, split).is_file():
            continue
        crops, y, _ = load_crops(work, split)
        out[split] = _predict(clf, normalize(crops, spec), f"int8 backbone {split}")
        out[f"y_{split}"] = y
    out["rep"] = _predict(clf, rep, "int8 backbone representative")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _predict(clf: Classifier, x: np.ndarray, desc: str) -> np.ndarray:
    return np.concatenate([clf.predict(x[i : i + 32]) for i in tqdm(range(0, len(x), 32), desc=desc)])


def run_vector_model(model: bytes, x: np.ndarray) -> np.ndarray:
    """Run a (1, D) -> (1, C) TFLite model row by row on LiteRT, with the same int8 (de)quantisation
    at the edges as masklite.classifier.Classifier (which is built for image inputs)."""
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    res = np.empty((len(x), int(out["shape"][-1])), np.float32)
    for i, row in enumerate(x):
        interpreter.set_tensor(inp["index"], quantize(row[None].astype(np.float32), inp))
        interpreter.invoke()
        res[i] = dequantize(interpreter.get_tensor(out["index"])[0], out)
    return res


def run_config(cfg: HeadConfig, feats: dict, q: dict) -> dict:
    t0 = time.perf_counter()
    head, history = train_head(feats["x_train"], feats["y_train"], feats["x_val"], feats["y_val"], 2, cfg)
    train_s = time.perf_counter() - t0
    p32 = np.asarray(head.predict(feats["x_test"], verbose=0, batch_size=256))
    p8 = run_vector_model(head_to_tflite_int8(head, q["rep"]), q["test"])
    y = feats["y_test"]
    cross = {}
    for part in CROSS_PARTS:
        if f"x_{part}" not in feats:
            continue
        b32 = _balanced(
            feats[f"y_{part}"], head.predict(feats[f"x_{part}"], verbose=0, batch_size=256).argmax(1)
        )
        cross[f"float32_{part}_balanced"], cross[f"float32_{part}_unmasked"] = b32
        if part in q:
            b8 = _balanced(
                feats[f"y_{part}"], run_vector_model(head_to_tflite_int8(head, q["rep"]), q[part]).argmax(1)
            )
            cross[f"int8_{part}_balanced"], cross[f"int8_{part}_unmasked"] = b8
    return cross | {
        "depth": cfg.depth,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "width": cfg.width,
        "head_params": int(head.count_params()),
        "val_accuracy": history["val_accuracy"][-1],
        "float32_accuracy": float((p32.argmax(1) == y).mean()),
        "int8_accuracy": float((p8.argmax(1) == y).mean()),
        "int8_vs_float32_label_agreement": float((p8.argmax(1) == p32.argmax(1)).mean()),
        "train_seconds": round(train_s, 2),
    }


def run_study(
    kind: str, work: Path, reports_dir: Path, base: HeadConfig, seeds: int, weights: str
) -> pd.DataFrame:
    grid = GRIDS[kind]
    splits = [s for s in ("train", "val", "test", *CROSS_PARTS) if (work / "features" / f"{s}.npz").is_file()]
    loaded = {s: load_split(work / "features", s) for s in splits}
    test = loaded["test"]
    feats = {f"{k}_{s}": loaded[s][v] for s in splits for k, v in (("x", "X"), ("y", "y"))}
    q = int8_backbone_features(work, weights)
    rows = []
    configs = [
        replace(base, **grid["fixed"], **{grid["param"]: v}, seed=s)
        for v in grid["values"]
        for s in range(seeds)
    ]
    for cfg in tqdm(configs, desc=f"study {kind}"):
        rows.append(run_config(cfg, feats, q))
        print(json.dumps(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    out = reports_dir / "studies"
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{kind}_runs.csv", index=False)
    summary = summarise(df, grid["param"])
    summary.to_csv(out / f"{kind}.csv", index=False)
    plot(summary, grid["param"], kind, out / f"{kind}.png")
    meta = {"base": asdict(base), "seeds": seeds, "grid": grid, "test_n": int(len(test["y"]))}
    (out / f"{kind}_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_markdown(reports_dir, work)
    print(summary.to_string(index=False))
    return df


def summarise(df: pd.DataFrame, param: str) -> pd.DataFrame:
    metrics = [
        "val_accuracy",
        "float32_accuracy",
        "int8_accuracy",
        "int8_vs_float32_label_agreement",
        "train_seconds",
    ] + [c for c in df.columns if c.startswith(("float32_x", "int8_x"))]
    agg = df.groupby(param)[metrics].agg(["mean", "std"])
    agg.columns = [f"{m}_{s.replace('std', 'sd')}" for m, s in agg.columns]
    agg["seeds"] = df.groupby(param).size()
    agg["head_params"] = df.groupby(param)["head_params"].first()
    return agg.reset_index()


def plot(summary: pd.DataFrame, param: str, kind: str, path: Path) -> None:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    x = summary[param].to_numpy()
    for key, label, fmt in (
        ("float32_accuracy", "float32, in-distribution test", "o-"),
        ("int8_accuracy", "int8 (head-only approx.), test", "s--"),
        ("float32_xtest_balanced", "float32, cross-source xtest (balanced)", "^-"),
        ("int8_xtest_balanced", "int8, cross-source xtest (balanced)", "v--"),
    ):
        if f"{key}_mean" not in summary:
            continue
        ax.errorbar(
            x, 100 * summary[f"{key}_mean"], yerr=100 * summary[f"{key}_sd"], fmt=fmt, capsize=4, label=label
        )
    ax.set_xticks(x)
    ax.set_xlabel("dense layers (incl. output)" if param == "depth" else "epochs")
    ax.set_ylabel("accuracy (%)")
    n = int(summary["seeds"].iloc[0])
    ax.set_title(f"Accuracy vs {'head depth' if param == 'depth' else 'epochs'} (mean ± sd, {n} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_markdown(reports_dir: Path, work: Path) -> Path:
    out = reports_dir / "studies"
    lines = [
        "# Reduction studies: how small can the head be?",
        "",
        "Generated by `python -m training study layers` and `python -m training study epochs` "
        "(issue #4, part 1; re-run in issue #12 on the new data). Each configuration trains the dense "
        "head on the cached frozen MobileNetV2 features of the build (128×128; the training folder plus "
        "the cross-source training faces, with plain, degraded and synthetic-mask views), several seeds, "
        "and is scored on the group-aware in-distribution test split and on the cross-source xval / "
        "xtest parts. These are head-only variants: the shipped models also fine-tune the upper backbone "
        "blocks. Depth counts every Dense layer **including the softmax output** (depth 1 = logistic "
        "regression on the pooled features).",
        "",
        "*int8* = the head converted to full-int8 TFLite and run (LiteRT, `masklite.classifier.Classifier`) "
        "on the features of the full-int8 backbone — an approximation of converting each configuration "
        "end to end (one re-quantisation of the pooled features). Check: the shipped configuration's "
        "head-only int8 "
        "accuracy vs the shipped end-to-end int8 model is given below.",
        "",
    ]
    for kind, grid in GRIDS.items():
        csv = out / f"{kind}.csv"
        if not csv.is_file():
            lines += [f"## {kind}", "", f"not run yet: `python -m training study {kind}`", ""]
            continue
        df = pd.read_csv(csv)
        meta = json.loads((out / f"{kind}_meta.json").read_text())
        p = grid["param"]
        fixed = ", ".join(f"{k} {v}" for k, v in grid["fixed"].items())
        lines += [
            f"## Accuracy vs {'head depth' if p == 'depth' else 'epochs'} ({fixed}; width "
            f"{meta['base']['width']}, dropout {meta['base']['dropout']}; {meta['seeds']} seeds; test n = "
            f"{meta['test_n']})",
            "",
        ]
        headers = [p, "head params", "val acc.", "float32 test acc.", "int8 test acc.",
                   "int8/float32 label agreement", "train s"]  # fmt: skip
        scores = ("val_accuracy", "float32_accuracy", "int8_accuracy", "int8_vs_float32_label_agreement")
        lines += markdown_table(
            headers,
            [
                [
                    int(r[p]),
                    f"{int(r['head_params']):,}",
                    *(_ms(r, c) for c in scores),
                    f"{r['train_seconds_mean']:.1f}",
                ]
                for _, r in df.iterrows()
            ],
        )
        cross_cols = [
            c[: -len("_mean")]
            for c in df.columns
            if c.startswith(("float32_x", "int8_x")) and c.endswith("_mean")
        ]
        if cross_cols:
            lines += [
                "",
                "The same runs on faces from **other sources** (cross-source parts of the build, "
                "argmax): balanced accuracy and without_mask recall. In distribution every "
                "configuration is saturated; here the differences can show.",
                "",
            ]
            lines += markdown_table(
                [p, *(c.replace("_", " ") for c in cross_cols)],
                [[int(r[p]), *(_ms(r, c) for c in cross_cols)] for _, r in df.iterrows()],
            )
        lines += ["", f"![{kind}]({kind}.png)", ""]
    lines += _approximation_check(out)
    lines += _conclusions(out)
    path = reports_dir / "studies.md"
    text = (
        "\n".join(lines)
        .replace("](layers.png)", "](studies/layers.png)")
        .replace("](epochs.png)", "](studies/epochs.png)")
    )
    path.write_text(text + "\n")
    return path


def _ms(r, key: str) -> str:
    sd = r[f"{key}_sd"]
    sd = 0.0 if sd != sd else sd  # NaN with a single seed
    return f"{100 * r[f'{key}_mean']:.2f} ± {100 * sd:.2f} %"


def _conclusions(out: Path) -> list[str]:
    notes = out / "notes.md"
    return [notes.read_text()] if notes.is_file() else []


def _approximation_check(out: Path) -> list[str]:
    """Head-only int8 of the shipped configuration (depth 4, 15 epochs, seed 0) vs the shipped int8 model."""
    runs, card = out / "layers_runs.csv", DEFAULT_MODELS_DIR / "model_card.json"
    if not (runs.is_file() and card.is_file()):
        return []
    df = pd.read_csv(runs)
    row = df[(df.depth == 4) & (df.epochs == 15) & (df.seed == 0)]
    if row.empty:
        return []
    models = json.loads(card.read_text())["models"]
    r = row.iloc[0]
    return [
        "## Check of the int8 approximation",
        "",
        f"Shipped configuration (depth 4, 15 epochs, seed 0): head-only int8 test accuracy "
        f"{100 * r.int8_accuracy:.2f} % here vs "
        f"{100 * models['int8']['metrics']['test']['accuracy']:.2f} % for the shipped end-to-end int8 model; "
        f"float32 {100 * r.float32_accuracy:.2f} % here vs "
        f"{100 * models['float32']['metrics']['test']['accuracy']:.2f} % shipped.",
        "",
    ]
