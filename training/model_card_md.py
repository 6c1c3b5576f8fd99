# ruff: noqa: E501 - a markdown template: long literal lines read better unbroken
"""models/MODEL_CARD.md, rendered from model_card.json so the two never disagree."""

from __future__ import annotations

from pathlib import Path

from masklite.card import ModelCard

TARGET_ACC = 0.99


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _ms(v) -> str:
    return f"{v:.2f} ms"


def _get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def print_summary(card: ModelCard) -> None:
    ev = (card.model_extra or {}).get("evaluation", {})
    print(
        "\nprecision  test acc  bal.acc   ROC AUC   ECE      scenes(ann)  scenes(det)  face recall  MB     ms/face"
    )
    for p, e in card.models.items():
        m = e.metrics
        lat = (e.model_extra or {}).get("latency_ms", {})
        print(
            f"{p:9s}  {_pct(_get(m, 'test', 'accuracy')):8s}  {_pct(_get(m, 'test', 'balanced_accuracy')):8s}  "
            f"{_get(m, 'test', 'roc_auc', default=float('nan')):.4f}    {_get(m, 'test', 'ece', default=0):.4f}   "
            f"{_pct(_get(m, 'scenes', 'annotated', 'accuracy')):11s}  "
            f"{_pct(_get(m, 'scenes', 'detected', 'accuracy')):11s}  "
            f"{_pct(_get(m, 'scenes', 'detected', 'face_recall')):11s}  "
            f"{e.bytes / 1e6:5.2f}  {lat.get('median_ms', float('nan')):.2f}"
        )
    if ev:
        print(
            f"int8 speedup vs float32 (LiteRT, 1 thread, batch 1): {ev.get('int8_speedup_vs_float32', 0):.2f}x "
            f"median, {ev.get('int8_speedup_vs_float32_p10', 0):.2f}x p10 (target >= 1.8x)"
        )
        pa = ev.get("parity_test", {})
        print(f"label agreement on test: {pa.get('label_agreement')}")


def write_model_card_md(card: ModelCard, models_dir: Path) -> Path:
    ev = (card.model_extra or {}).get("evaluation", {})
    evalset = (card.model_extra or {}).get("evalset", {})
    f32, i8 = card.models["float32"], card.models["int8"]
    lat32 = (f32.model_extra or {}).get("latency_ms", {})
    lat8 = (i8.model_extra or {}).get("latency_ms", {})
    keras_test = _get(ev, "keras", "test", default={})
    t = card.training
    head = t.get("head", {})
    feats = t.get("features", {})
    ds = card.dataset
    sizes = card.splits.get("sizes", {})
    lines = [
        f"# Model card: {card.name} (version {card.version})",
        "",
        "Face-mask classifier for face crops: **" + " / ".join(card.labels) + "** (output index order). "
        "It runs after the YuNet face detector in the masklite service. Two shipped files, same network:",
        "",
        "| file | precision | size | test accuracy | balanced acc. | scene faces (annotated boxes) | "
        "scene faces (detector) | latency median / p10 (1 thread) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, e, lat in (("float32", f32, lat32), ("int8", i8, lat8)):
        lines.append(
            f"| `{e.file}` | {p} | {e.bytes / 1e6:.2f} MB | {_pct(_get(e.metrics, 'test', 'accuracy'))} | "
            f"{_pct(_get(e.metrics, 'test', 'balanced_accuracy'))} | "
            f"{_pct(_get(e.metrics, 'scenes', 'annotated', 'accuracy'))} | "
            f"{_pct(_get(e.metrics, 'scenes', 'detected', 'accuracy'))} | "
            f"{_ms(lat['median_ms']) + ' / ' + _ms(lat.get('p10_ms', float('nan'))) if lat else 'n/a'} |"
        )
    if keras_test:
        lines.append(
            f"| (Keras, reference) | float32 | – | {_pct(keras_test.get('accuracy'))} | "
            f"{_pct(keras_test.get('balanced_accuracy'))} | "
            f"{_pct(_get(ev, 'keras', 'scenes', 'annotated', 'accuracy'))} | "
            f"{_pct(_get(ev, 'keras', 'scenes', 'detected', 'accuracy'))} | – |"
        )
    speed, speed10 = ev.get("int8_speedup_vs_float32"), ev.get("int8_speedup_vs_float32_p10")
    lines += [
        "",
        f"int8 vs float32 speed-up: **{speed:.2f}×** on the median, **{speed10 or float('nan'):.2f}×** on the 10th "
        "percentile (LiteRT via `masklite.classifier.Classifier`, 1 thread, batch 1, interleaved runs on the "
        f"2-core build machine with a 1-minute load average of {lat8.get('loadavg_1min_before', '?')} while "
        "other jobs ran: the p10 figure is the less load-sensitive one; `make bench` measures on a quiet "
        "machine)."
        if speed
        else "",
        *_speed_note(speed, speed10, lat8, f32.bytes / i8.bytes),
        "",
        "## Intended use",
        "",
        "Classify a face crop (from the detector, grown by `crop_margin`) as masked or not. Not for identity, "
        "not for medical or compliance decisions without human review. Faces smaller than ~20 px, profile "
        "views, and partial masks (chin, nose out) are outside what the training data covers well.",
        "",
        "## Input",
        "",
        f"* {card.input.size[0]}×{card.input.size[1]} {card.input.color}, x = pixel × scale + offset with scale "
        f"{card.input.scale:.6f} and offset {card.input.offset} (i.e. pixel/127.5 − 1); `masklite.preprocess` "
        "implements it for training and "
        "serving alike.",
        f"* Crop: YuNet face box grown by **{card.crop_margin}** of its longer side on each side, squared and "
        "clipped (`masklite.faces.crop_face`). The int8 model takes int8 input/output; `Classifier` "
        "(de)quantises at the edges.",
        *_detector_lines(card),
        "",
        "## Model",
        "",
        f"MobileNetV2 (alpha {t.get('backbone', {}).get('alpha')}, ImageNet weights from "
        f"`{t.get('backbone', {}).get('weights')}`), frozen, global-average pooled (1280 features) → dense head "
        f"with **{head.get('depth')} Dense layers counting the softmax output** ({head.get('depth', 1) - 1} hidden "
        f"× {head.get('width')} ReLU units, dropout {head.get('dropout')}), {head.get('epochs')} epochs, Adam "
        f"lr {head.get('learning_rate')}, class-balanced loss weights, seed {head.get('seed')}. "
        "The backbone is frozen: the head is trained on cached backbone features, which is why a full build "
        "fits in minutes on 2 CPU cores; the targets are met without fine-tuning.",
        "",
        "The int8 file is full-integer quantised (weights and activations), calibrated on "
        f"{_get(i8.model_extra or {}, 'quantization', 'representative_samples')} class-balanced clean face crops "
        "from the train split.",
        "",
        "## Data",
        "",
        f"* Training set: `{ds.get('name')}` ({ds.get('num_images')} images, "
        f"{', '.join(f'{k} {v}' for k, v in _get(ds, 'fingerprint', 'counts', default={}).items())}); fingerprint "
        f"`{_get(ds, 'fingerprint', 'sha256', default='')[:16]}…` (sha256 over sorted file hashes).",
        f"* Crop rule: {ds.get('crop_rule')}. Counts: "
        + "; ".join(
            f"{lab}: " + ", ".join(f"{k} {v}" for k, v in c.items())
            for lab, c in ds.get("crop_counts", {}).items()
        )
        + ".",
        f"* Split {card.splits.get('fractions')} (seed {card.splits.get('seed')}), **group-aware and "
        f"stratified**: groups = {_get(ds, 'groups', 'sources')}; {_get(ds, 'groups', 'num_groups')} groups, "
        f"the largest {_get(ds, 'groups', 'largest_group')} images (one RMFD identity). No group straddles two "
        "splits (tested).",
        "",
        "| split | " + " | ".join(card.labels) + " |",
        "|---|" + "---|" * len(card.labels),
    ]
    for sp, c in sizes.items():
        lines.append(f"| {sp} | " + " | ".join(str(c.get(lab, 0)) for lab in card.labels) + " |")
    lines += [
        "",
        f"* Augmentation (train only, {feats.get('train_views')} random views per image + the clean view): "
        f"detector-box jitter (shift ±{feats.get('box_shift')}, scale {feats.get('box_scale')}), horizontal "
        f"flip, low resolution (down to {feats.get('lowres_side')} px then back up, half of them JPEG "
        "re-encoded) to mimic small faces in scene photos, brightness/contrast jitter.",
        "",
        "## Results",
        "",
        "### Test split (held out, group-aware)",
        "",
        "| precision | accuracy | balanced acc. | ROC AUC | ECE | "
        + " | ".join(f"recall {lab}" for lab in card.labels)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(card.labels),
    ]
    for name, m in (
        ("Keras", keras_test),
        ("float32 TFLite", f32.metrics.get("test", {})),
        ("int8 TFLite", i8.metrics.get("test", {})),
    ):
        if not m:
            continue
        lines.append(
            f"| {name} | {_pct(m.get('accuracy'))} | {_pct(m.get('balanced_accuracy'))} | "
            f"{m.get('roc_auc', float('nan')):.4f} | {m.get('ece', float('nan')):.4f} | "
            + " | ".join(_pct(_get(m, "per_class", lab, "recall")) for lab in card.labels)
            + " |"
        )
    pa = ev.get("parity_test", {})
    if pa:
        lines += [
            "",
            f"Parity on the {pa['n']} test crops: label agreement float32 vs Keras "
            f"{_pct(pa['label_agreement']['float32_vs_keras'])}, int8 vs float32 "
            f"{_pct(pa['label_agreement']['int8_vs_float32'])}; max |Δp| float32 vs Keras "
            f"{pa['max_abs_prob_diff']['float32_vs_keras']:.2e}, int8 vs float32 "
            f"{pa['max_abs_prob_diff']['int8_vs_float32']:.3f} (mean {pa['mean_abs_prob_diff']['int8_vs_float32']:.4f}).",
            "",
            "![confusion matrices, test](plots/confusion_test.png)",
            "![reliability](plots/reliability_test.png)",
        ]
    sc32 = f32.metrics.get("scenes")
    if sc32:
        lines += [
            "",
            "### Cross-source check: scene photos",
            "",
            ev.get("scenes_note", ""),
            "",
            "| precision | (a) annotated boxes: accuracy | balanced | with_mask | without_mask | "
            "(b) detector: face recall | accuracy on matched faces | balanced |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, sc in (
            ("Keras", _get(ev, "keras", "scenes", default={})),
            ("float32", sc32),
            ("int8", i8.metrics.get("scenes", {})),
        ):
            a, d = sc.get("annotated", {}), sc.get("detected", {})
            lines.append(
                f"| {name} | {_pct(a.get('accuracy'))} ({a.get('n')}) | {_pct(a.get('balanced_accuracy'))} | "
                f"{_pct(_get(a, 'per_class', 'with_mask', 'accuracy'))} | "
                f"{_pct(_get(a, 'per_class', 'without_mask', 'accuracy'))} | "
                f"{_pct(d.get('face_recall'))} ({d.get('matched')}/{d.get('annotated')}) | "
                f"{_pct(d.get('accuracy'))} | {_pct(d.get('balanced_accuracy'))} |"
            )
        lines += ["", "![confusion matrices, scenes](plots/confusion_scenes.png)"]
    ab = ev.get("framing_ablation")
    if ab:
        keys = [k for k in ab["rows"][0] if k not in ("train_input", "seeds") and not k.endswith("_balanced")]
        lines += [
            "",
            "### Framing bias: what face crops and augmentation bought",
            "",
            "The training set is biased in framing: without_mask is mostly tight celebrity face crops, with_mask "
            "has many stock photos of whole heads and shoulders, so a classifier can learn framing instead of "
            "the mask. We (1) crop the face with the service's detector for **both** classes, so both are "
            "seen as the service will show them, and (2) add augmented views that look like faces cut from "
            "scene photos. Heads trained on cached features of each input kind "
            f"({ab['rows'][0]['seeds']} seeds, mean ± sd; same head config):",
            "",
            "| head trained on | " + " | ".join(f"{k} (n={ab['eval_sizes'][k]})" for k in keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for r in ab["rows"]:
            lines.append(
                f"| {r['train_input']} | "
                + " | ".join(
                    f"{100 * r[k]['mean']:.1f} ± {100 * r[k]['sd']:.1f} % (bal. {100 * r[k + '_balanced']['mean']:.1f})"
                    for k in keys
                )
                + " |"
            )
        lines += ["", *_ablation_reading(ab, keys), "", "![framing ablation](plots/framing_ablation.png)"]
    lines += _variance(card)
    lines += [
        "",
        "### Training curves",
        "",
        "![training curves](plots/training_curves.png)",
        "",
        "## Evaluation set shipped with the models",
        "",
        f"`{evalset.get('file')}`: {evalset.get('counts')} — {evalset.get('source')}; {evalset.get('format')}. "
        f"Accuracy on it: float32 {_pct(_get(f32.metrics, 'evalset', 'accuracy'))}, int8 "
        f"{_pct(_get(i8.metrics, 'evalset', 'accuracy'))}.",
        "",
        "## Limitations",
        "",
        "* The test split comes from the same web-scraped collection as training: ~99 % there says little "
        "about other cameras. The scene check is small (118 faces) and partly overlaps the training era.",
        "* without_mask training faces are mostly East-Asian celebrities (RMFD) and prajnasb photos; with_mask "
        "includes illustrations and a few artificial masks. Labels were not re-checked by hand.",
        "* The detector misses some masked faces (see the face recall above); a missed face is never classified.",
        "",
        "## Reproduce",
        "",
        "```",
        "python -m training build     # prepare -> features -> train -> export -> evaluate",
        "```",
        "",
        *_build_table(t),
        "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in card.versions.items()) + ".",
        "",
    ]
    path = models_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def _ablation_reading(ab: dict, keys: list[str]) -> list[str]:
    """Plain-language differences, shipped head vs each alternative, flagged as noise when they are
    smaller than two faces or two seed standard deviations."""
    rows = {r["train_input"]: r for r in ab["rows"]}
    shipped = next(r for name, r in rows.items() if "shipped" in name)
    out = [
        "Reading (shipped head minus alternative, accuracy points; *noise* = under two faces or two seed sd):",
        "",
    ]
    for name, r in rows.items():
        if r is shipped:
            continue
        parts = []
        for k in keys:
            d = 100 * (shipped[k]["mean"] - r[k]["mean"])
            floor = max(200.0 / ab["eval_sizes"][k], 200 * max(shipped[k]["sd"], r[k]["sd"]))
            parts.append(f"{k} {d:+.1f}" + (" (noise)" if abs(d) < floor else ""))
        out.append(f"* vs *{name}*: " + ", ".join(parts))
    best = {k: max(rows, key=lambda n, k=k: rows[n][k]["mean"]) for k in keys}
    out += ["", "Best variant per evaluation: " + "; ".join(f"{k}: *{v}*" for k, v in best.items()) + "."]
    out += [
        "",
        "So: the augmented views are what make the classifier hold up on small, blurry faces (the 24-px "
        "column), and face crops match what the service feeds the model; on the 118 scene faces the "
        "differences between the variants are mostly within noise (see *Training variance* below), and "
        "heads trained on whole images do at least as well there — the framing bias does not show up as a "
        "scene-accuracy loss for any variant.",
    ]
    return out


def _build_table(t: dict) -> list[str]:
    wall, cpu = t.get("build_seconds", {}), t.get("build_cpu_seconds", {})
    if not wall:
        return ["Build time per stage: see `training.build_seconds` in model_card.json."]
    stages = [k for k in wall if k not in ("total", "cpus", "loadavg_1min_start", "loadavg_1min_end")]
    lines = [
        f"Build time per stage on the {wall.get('cpus', '?')}-CPU build machine (1-minute load average "
        f"{wall.get('loadavg_1min_start', '?')} at start, {wall.get('loadavg_1min_end', '?')} at end: the CPU "
        "was shared with other jobs, so the wall time overstates what the build needs; the CPU column is this "
        "process's own CPU time over all threads):",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {wall[k]} | {cpu.get(k, '–')} |" for k in stages]
    lines.append(f"| **total** | **{wall.get('total')}** | **{cpu.get('total', '–')}** |")
    return lines


def _detector_lines(card: ModelCard) -> list[str]:
    d = card.detector
    lines = [
        f"* Face detector: YuNet `{d.file}` (sha256 `{d.sha256}`), score threshold {d.score_threshold}, "
        f"NMS {d.nms_threshold}, served by **{d.runtime}**. Box decoding and NMS (`masklite.yunet`) are "
        "OpenCV's, so the scores and thresholds mean the same on every runtime. Files derived from it:"
    ]
    lines += [
        f"  * {rt}: `{f.file}` (sha256 `{f.sha256}`): {f.provenance}." for rt, f in d.runtime_files.items()
    ]
    return lines


def _speed_note(speed: float | None, speed10: float | None, lat8: dict, shrink: float) -> list[str]:
    if speed is None or max(speed, speed10 or 0) >= 1.8:
        return []
    cpu = lat8.get("cpu", "this CPU")
    # no explanation from the CPU's instruction set: a busy build machine alone gives such numbers
    return [
        "",
        f"**The ≥ 1.8× int8 speed-up target is not met in this measurement on {cpu}.** What int8 buys for "
        f"certain is a {shrink:.1f}× smaller file with the same accuracy. Check the load average the latency "
        "was measured at, and re-measure on a quiet machine with `make bench` (it marks noisy runs).",
    ]


def _variance(card: ModelCard) -> list[str]:
    """The same recipe built once more with the LiteRT feature engine (reports/training_variance.json):
    how far the numbers move when nothing but ~3e-5 of feature noise changes."""
    import json

    from masklite.paths import REPO_ROOT

    path = REPO_ROOT / "reports" / "training_variance.json"
    if not path.is_file():
        return []
    alt = json.loads(path.read_text())
    rows = []
    for p in ("float32", "int8"):
        m = card.models[p].metrics
        rows.append(
            f"| {p} | {_pct(_get(m, 'test', 'accuracy'))} / {_pct(alt[p]['test_accuracy'])} | "
            f"{_pct(_get(m, 'scenes', 'annotated', 'accuracy'))} / {_pct(alt[p]['scenes_annotated_accuracy'])} | "
            f"{_pct(_get(m, 'scenes', 'detected', 'accuracy'))} / {_pct(alt[p]['scenes_detected_accuracy'])} |"
        )
    return [
        "",
        "### Training variance",
        "",
        "The same recipe, built a second time with `--feature-engine litert` (the backbone features differ by "
        "~3e-5, so the head lands in a slightly different optimum). Shipped build / that build:",
        "",
        "| precision | test accuracy | scene faces, annotated | scene faces, detector |",
        "|---|---|---|---|",
        *rows,
        "",
        "The test split moves by one or two images; the scene accuracies move by up to ~4 points (5 of 118 "
        "faces, mostly among the 30 without_mask faces). Read every scene number here as ± 4 points, and the "
        "framing ablation's scene columns the same way. The shipped build is the deterministic Keras-feature "
        "build (`python -m training build` reproduces its training metrics exactly).",
    ]
