# ruff: noqa: E501 - a markdown template: long literal lines read better unbroken
"""models/MODEL_CARD.md, rendered from model_card.json so the two never disagree."""

from __future__ import annotations

import json
from pathlib import Path

from masklite.card import ModelCard
from masklite.paths import REPO_ROOT
from training.ablation import mean_sd

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
        *cross_source_md(card),
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
        f"{card.input.scale:.6f} and offset {card.input.offset} (i.e. pixel/127.5 − 1); `masklite.classifier.preprocess` "
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
        "The head is first trained on cached backbone features; then the upper blocks (13–16, Conv_1) are "
        "fine-tuned with it on cached lower-block activations of the same views (BatchNorm kept in inference "
        "mode), which is why a full build fits in minutes on 2 CPU cores."
        if t.get("finetune")
        else "The backbone is frozen: the head is trained on cached backbone features.",
        "",
        "The int8 file is full-integer quantised (weights and activations), calibrated on "
        f"{_get(i8.model_extra or {}, 'quantization', 'representative_samples')} class-balanced clean face crops "
        "from the train split.",
        "",
        "## Data",
        "",
        *_sources_md(card),
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


def _sources_md(card: ModelCard) -> list[str]:
    cs = card.dataset.get("cross_source")
    if not cs:
        return []
    lines = [
        "**Sources and licences.** The shipped weights were trained on the sources below. WIDER FACE, RMFD and "
        "the macwinwin scenes are **research-use only**, so the shipped weights inherit research-only terms: "
        "do not use them commercially.",
        "",
        "| source | licence | part | with_mask | without_mask | split units | detector boxes |",
        "|---|---|---|---|---|---|---|",
        f"| chandrikadeb7 | {cs['licences'].get('chandrikadeb7')} | train/val/test | see below | | groups | |",
    ]
    for source, parts in cs["faces"].items():
        for part, c in sorted(parts.items()):
            lines.append(
                f"| {source} | {cs['licences'].get(source)} | {part} | {c.get('with_mask', 0)} | "
                f"{c.get('without_mask', 0)} | {c['groups']} | {c.get('detector_boxes', 0)} |"
            )
    lines += [
        "",
        "Scene faces are cropped with the service's detector (any score ≥ 0.3) matched to the annotated box by "
        "IoU ≥ 0.3; an annotated face the detector misses keeps its annotated box. Every unmasked training face "
        "with landmarks also appears with a **synthetic mask** drawn from YuNet's five landmarks "
        "(`training/synthetic_mask.py`: surgical, cloth, N95, patterned; varied colour, texture, shading and "
        "placement), and both classes get the same **degradations** (12–48 px and back, blur, JPEG 20–70, "
        "noise, gamma, colour casts, greyscale).",
        "",
    ]
    return lines


def _build_table(t: dict) -> list[str]:
    wall, cpu = t.get("build_seconds", {}), t.get("build_cpu_seconds", {})
    if not wall:
        return ["Build time per stage: see `training.build_seconds` in model_card.json."]
    stages = [k for k in wall if k not in ("total", "cpus", "loadavg_1min_start", "loadavg_1min_end")]
    load = max(float(wall.get("loadavg_1min_start", 0)), float(wall.get("loadavg_1min_end", 0)))
    noisy = load / max(1, int(wall.get("cpus", 1))) > 0.5
    lines = [
        "**noisy: do not compare** (load above 0.5 per core): the wall times are upper bounds, not costs."
        if noisy
        else "",
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
        f"NMS {d.nms_threshold}, served by **{d.runtime}**. Box decoding and NMS (`masklite.faces`) are "
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


SETS = (
    ("test", "pooled", "in-distribution test (chandrikadeb7)"),
    ("xtest", "pooled", "**cross-source test, pooled**"),
    ("xtest", "macwinwin", "xtest: macwinwin scenes"),
    ("xtest", "wider", "xtest: WIDER crowds"),
    ("xtest", "rmfd", "xtest: RMFD masked"),
    ("xval", "pooled", "cross-source validation, pooled (picks thresholds)"),
    ("scenes", "pooled", "scenes-sample (30 scenes; too small to gate on)"),
)


def _recall_cell(block: dict | None, label: str) -> str:
    c = _get(block or {}, "per_class", label)
    if not c:
        return "–"
    lo, hi = c["ci95"]
    return f"{100 * c['recall']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] (n={c['n']})"


def cross_source_md(card: ModelCard) -> list[str]:
    """Per model and set: recall per class with 95 % Wilson intervals, coverage, balanced accuracy; the
    peer; end to end; by face size; thresholds; the ablation; the error gallery."""
    ev = (card.model_extra or {}).get("evaluation", {})
    cs = ev.get("cross_source")
    if not cs:
        return []
    lines = [
        "## Real-world accuracy: faces from other sources",
        "",
        "Every figure here is on faces from sources **other than** the training folder, split by scene or "
        "source folder (recorded in `cross_source_parts.json` of the build's prepare stage): `xval` chose the "
        "thresholds below, `xtest` was scored once for this card. A face answered `unknown` (too small) counts "
        "as **wrong**; coverage is the share of faces judged. Intervals are 95 % Wilson intervals.",
        "",
        f"* Decision threshold on `mask_probability` (the service applies it; the probability itself is "
        f"unchanged): float32 **{card.models['float32'].decision_threshold}**, int8 "
        f"**{card.models['int8'].decision_threshold}**"
        + (f", micro **{card.models['micro'].decision_threshold}**" if "micro" in card.models else "")
        + f". Rule: {_get(cs, 'thresholds', 'decision', 'float32', 'rule')}.",
        f"* Smallest face judged: **{card.min_judgeable_face} px** (shorter side of the box, original pixels); "
        f"smaller faces are answered `unknown`. Rule: {_get(cs, 'thresholds', 'min_face', 'rule')}.",
        f"* Detector score threshold: **{card.detector.score_threshold}** (was 0.6). Rule: "
        f"{_get(cs, 'detector_sweep', 'rule')}.",
        "",
        "| model | set | with_mask recall | without_mask recall | balanced | coverage |",
        "|---|---|---|---|---|---|",
    ]
    for p in [p for p in ("float32", "int8", "micro") if p in card.models]:
        m = card.models[p].metrics.get("cross_source", {})
        for part, source, name in SETS:
            block = _get(m, part, source)
            if not block:
                continue
            lines.append(
                f"| {p} | {name} | {_recall_cell(block, 'with_mask')} | {_recall_cell(block, 'without_mask')} | "
                f"{_pct(block.get('balanced_accuracy'))} | {_pct(block.get('coverage'))} |"
            )
    peer = cs.get("peer", {})
    peer_crops = _get(peer, "xtest", "crops", "xtest", default={})
    for source in ("pooled", "macwinwin", "wider", "rmfd"):
        block = peer_crops.get(source)
        if block:
            lines.append(
                f"| AIZOO peer (crop in, its best face's label; none found = wrong) | xtest {source} | "
                f"{_recall_cell(block, 'with_mask')} | {_recall_cell(block, 'without_mask')} | "
                f"{_pct(block.get('balanced_accuracy'))} | {_pct(block.get('coverage'))} |"
            )
    lines += [
        "",
        "### End to end on whole scenes (detector + classifier, as the service answers)",
        "",
        "Face recall counts annotated faces of at least 24 px matched by a detection (IoU ≥ 0.3); labels are "
        "scored on the faces found.",
        "",
        "| scenes | model | face recall | masked found | unmasked found | with_mask label recall | "
        "without_mask label recall | balanced label accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in cs.get("end_to_end", {}).items():
        rows = [(p, r) for p, r in runs.items()]
        if _get(peer, name, "end_to_end"):
            rows.append(("AIZOO peer", peer[name]["end_to_end"]))
        for p, r in rows:
            lab = r["labels_on_found"]
            lines.append(
                f"| {name} | {p} | {_pct(r['face_recall'])} | {_pct(_get(r, 'face_recall_per_class', 'with_mask'))} | "
                f"{_pct(_get(r, 'face_recall_per_class', 'without_mask'))} | {_recall_cell(lab, 'with_mask')} | "
                f"{_recall_cell(lab, 'without_mask')} | {_pct(lab.get('balanced_accuracy'))} |"
            )
    lines += [
        "",
        "### Recall by face size (shorter side of the box, original pixels; pooled xtest)",
        "",
        "| model | size | with_mask recall | without_mask recall | coverage |",
        "|---|---|---|---|---|",
    ]
    for p in ("float32", "int8"):
        for size, block in (
            _get(card.models[p].metrics, "cross_source", "xtest", "pooled", "by_size") or {}
        ).items():
            lines.append(
                f"| {p} | {size} px | {_recall_cell(block, 'with_mask')} | {_recall_cell(block, 'without_mask')} "
                f"| {_pct(block.get('coverage'))} |"
            )
    probe = _get(cs, "thresholds", "min_face", "probe")
    if probe:
        lines += [
            "",
            "### The smallest face the model can judge (float32, xval faces shrunk to each size)",
            "",
            "| face size (px) | " + " | ".join(str(r["face_px"]) for r in probe) + " |",
            "|---|" + "---|" * len(probe),
            "| with_mask recall | " + " | ".join(_pct(r["recall"].get("0")) for r in probe) + " |",
            "| without_mask recall | " + " | ".join(_pct(r["recall"].get("1")) for r in probe) + " |",
            "| balanced | " + " | ".join(_pct(r["balanced"]) for r in probe) + " |",
        ]
    sweep = cs.get("detector_sweep", {})
    if sweep:
        lines += [
            "",
            "### Detector threshold (xval scenes: macwinwin + WIDER)",
            "",
            "| score threshold | masked faces found (≥ 24 px) | unmasked found | WIDER precision | WIDER detections |",
            "|---|---|---|---|---|",
        ]
        for r in sweep["rows"]:
            mark = " **(chosen)**" if r["threshold"] == sweep["chosen"] else ""
            lines.append(
                f"| {r['threshold']}{mark} | {_pct(_get(r, 'recall', 'with_mask'))} | "
                f"{_pct(_get(r, 'recall', 'without_mask'))} | {_pct(r['wider_precision'])} | {r['wider_detections']} |"
            )
    ab = cs.get("ablation")
    if ab:
        lines += [
            "",
            "### Ablation: what each step buys",
            "",
            f"Head-only variants on the same cached features, {ab['variants'][0]['seeds']} seeds each (mean ± sd), "
            "scored at the argmax and, in brackets, at each run's own xval-chosen threshold. Balanced accuracy / "
            "without_mask recall:",
            "",
            "| variant | train views | xval pooled | xtest pooled | xtest macwinwin | xtest WIDER | xtest RMFD (masked recall) |",
            "|---|---|---|---|---|---|---|",
        ]

        def cell(rows: list[dict], part: str, source: str, metric: str) -> str:
            m, sd = mean_sd(rows, part, source, metric)
            return f"{100 * m:.1f} ± {100 * sd:.1f}"

        for v in ab["variants"]:
            plain, tuned = v["runs"], v.get("runs_xval_threshold") or v["runs"]
            cells = [
                f"{cell(plain, part, src, 'balanced_accuracy')} / {cell(plain, part, src, 'without_mask')} "
                f"({cell(tuned, part, src, 'balanced_accuracy')} / {cell(tuned, part, src, 'without_mask')})"
                for part, src in (
                    ("xval", "pooled"),
                    ("xtest", "pooled"),
                    ("xtest", "macwinwin"),
                    ("xtest", "wider"),
                )
            ]
            rmfd = (
                f"{cell(plain, 'xtest', 'rmfd', 'with_mask')} ({cell(tuned, 'xtest', 'rmfd', 'with_mask')})"
            )
            lines.append(f"| {v['variant']} | {v['train_views']} | " + " | ".join(cells) + f" | {rmfd} |")
        tuned_info = card.training.get("finetune")
        if tuned_info:
            lines += [
                "",
                f"The shipped models add one more step: **E. fine-tuning the upper backbone blocks** (13–16 and "
                f"Conv_1, {tuned_info.get('trainable_params', 0):,} parameters, {tuned_info['config']['epochs']} "
                "epochs) with the head, then the xval thresholds: the first table above.",
            ]
    if cs.get("gallery"):
        lines += [
            "",
            "### The worst errors",
            "",
            "The most confident mistakes of the int8 model on xval + xtest (true label and mask probability "
            "under each face):",
            "",
            "![error gallery](plots/errors_cross_source.png)",
        ]
    return lines
