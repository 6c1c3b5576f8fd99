"""The cross-source part of `evaluate`: thresholds chosen on xval, every set scored, the peer beside us.

Order matters: the detector threshold is chosen first (xval scenes), then each model's decision
threshold (pooled xval crops), then the smallest judgeable face (xval, by size); only then are the
xtest parts, scenes-sample and the end-to-end scene runs scored, once, for the card.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masklite.card import DetectorSpec, ModelCard
from masklite.faces import crop_face, load_detector, match_boxes
from masklite.image import read_image_file
from masklite.pipeline import decide_label
from training.artifacts import crops_path, load_crops
from training.crosssource import (
    by_size,
    choose_min_face,
    choose_threshold,
    decide,
    gallery,
    recall_block,
)
from training.features import load_split, load_table
from training.peer import PeerDetector
from training.scenes import MATCH_IOU, load_scene_annotations
from training.sources import SOURCE_FOLDERS

DETECTOR_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
DETECTOR_REFERENCE = 0.6  # round 1's threshold: WIDER precision may drop at most 2 pt from it
MAX_PRECISION_DROP = 0.02
RECALL_MIN_SIZE = 24  # face recall is reported for faces of at least this size (shorter side, px)
PARTS = ("xval", "xtest", "scenes", "test")
Classify = Callable[[list[np.ndarray]], np.ndarray]


def scenes_of(work: Path, root: Path, part: str, sources: tuple[str, ...]) -> list[tuple[str, Path, object]]:
    """(source, image path, annotation) for every scene of `part` ("test" = scenes-sample)."""
    table = load_table(work / "features")
    split = "scenes" if part == "test" else part
    wanted = {(s, g) for s, g, sp in zip(table.source, table.group, table.split, strict=True) if sp == split}
    out = []
    for source in sources:
        folder = root / SOURCE_FOLDERS[source]
        for ann in load_scene_annotations(folder):
            if (source, ann.name) in wanted:
                out.append((source, folder / "images" / ann.filename, ann))
    return out


def detections(scenes, detector_path: Path, low: float, progress: bool) -> list[list]:
    detector = load_detector(DetectorSpec(), path=detector_path, score_threshold=low)
    return [
        detector.detect(read_image_file(str(path)))
        for _, path, _ in tqdm(scenes, desc="detect", disable=not progress)
    ]


def detector_sweep(scenes, found: list[list], grid=DETECTOR_GRID) -> dict:
    """Face recall per class (faces >= RECALL_MIN_SIZE) at each score threshold, and the precision on WIDER
    (the most completely annotated set): matched detections / detections of at least 16 px."""
    rows = []
    for t in grid:
        hit: dict[str, list[int]] = {}
        wider_det = wider_match = 0
        for (source, _, ann), faces in zip(scenes, found, strict=True):
            kept = [f for f in faces if f.score >= t]
            pairs = dict(match_boxes(ann.boxes, [f.box for f in kept], MATCH_IOU))
            for i, (box, label) in enumerate(zip(ann.boxes, ann.labels, strict=True)):
                if min(box[2], box[3]) >= RECALL_MIN_SIZE:
                    hit.setdefault(label, [0, 0])
                    hit[label][0] += i in pairs
                    hit[label][1] += 1
            if source == "wider":
                # WIDER dropped faces under 16 px from its boxes: count only detections it could have boxed
                big = [j for j, f in enumerate(kept) if min(f.box[2], f.box[3]) >= 16]
                wider_det += len(big)
                wider_match += sum(1 for j in pairs.values() if j in big)
        rows.append(
            {
                "threshold": t,
                "recall": {k: v[0] / v[1] for k, v in hit.items() if v[1]},
                "faces": {k: v[1] for k, v in hit.items()},
                "wider_precision": wider_match / wider_det if wider_det else float("nan"),
                "wider_detections": wider_det,
            }
        )
    ref = next(r for r in rows if r["threshold"] == DETECTOR_REFERENCE)
    ok = [r for r in rows if r["wider_precision"] >= ref["wider_precision"] - MAX_PRECISION_DROP]
    chosen = min(ok, key=lambda r: r["threshold"])
    return {
        "rows": rows,
        "chosen": chosen["threshold"],
        "rule": (
            f"lowest score threshold whose WIDER xval precision is within {MAX_PRECISION_DROP * 100:.0f} pt "
            f"of {DETECTOR_REFERENCE}'s; recall on faces >= {RECALL_MIN_SIZE} px"
        ),
    }


def end_to_end(
    scenes, found, threshold: float, crop_margin: float, classify: Classify, card: ModelCard, precision: str
) -> dict:
    """Detector at `threshold`, then the classifier and the card's decision, as the service answers."""
    labels = card.labels
    y, pred, recall_hit, recall_n = [], [], {}, {}
    for (_, path, ann), faces in zip(scenes, found, strict=True):
        kept = [f for f in faces if f.score >= threshold]
        pairs = match_boxes(ann.boxes, [f.box for f in kept], MATCH_IOU)
        for i, (box, label) in enumerate(zip(ann.boxes, ann.labels, strict=True)):
            if min(box[2], box[3]) >= RECALL_MIN_SIZE:
                recall_n[label] = recall_n.get(label, 0) + 1
                recall_hit[label] = recall_hit.get(label, 0) + any(a == i for a, _ in pairs)
        if not pairs:
            continue
        rgb = read_image_file(str(path))
        crops = [crop_face(rgb, kept[j].box, crop_margin) for _, j in pairs]
        probs = classify(crops)[:, card.mask_index]
        for (i, j), p in zip(pairs, probs, strict=True):
            y.append(labels.index(ann.labels[i]))
            answer = decide_label(card, float(p), kept[j].box, precision)
            pred.append(labels.index(answer) if answer in labels else -1)
    total = sum(recall_n.values())
    return {
        "face_recall": sum(recall_hit.values()) / total if total else float("nan"),
        "face_recall_per_class": {k: recall_hit[k] / n for k, n in recall_n.items()},
        "faces_for_recall": recall_n,
        "labels_on_found": recall_block(np.array(y), np.array(pred), labels),
    }


def peer_scores(scenes, peer_path: Path, crops_by_part: dict, labels: list[str], progress: bool) -> dict:
    """AIZOO end to end on the scenes, and on the face crops (its best face's label; none found = wrong)."""
    peer = PeerDetector(peer_path)
    y, pred, hit, n = [], [], {}, {}
    for _, path, ann in tqdm(scenes, desc="peer scenes", disable=not progress):
        found = peer.detect(read_image_file(str(path)))
        pairs = match_boxes(ann.boxes, [f.box for f in found], MATCH_IOU)
        matched = dict(pairs)
        for i, (box, label) in enumerate(zip(ann.boxes, ann.labels, strict=True)):
            if min(box[2], box[3]) >= RECALL_MIN_SIZE:
                n[label] = n.get(label, 0) + 1
                hit[label] = hit.get(label, 0) + (i in matched)
            if i in matched:
                y.append(labels.index(label))
                pred.append(labels.index(found[matched[i]].label))
    out = {
        "end_to_end": {
            "face_recall": sum(hit.values()) / max(1, sum(n.values())),
            "face_recall_per_class": {k: hit[k] / v for k, v in n.items()},
            "labels_on_found": recall_block(np.array(y), np.array(pred), labels),
        },
        "crops": {},
    }
    for part, (crops, yc, sources) in crops_by_part.items():
        answers = []
        for crop in tqdm(crops, desc=f"peer crops {part}", disable=not progress):
            faces = peer.detect(crop)
            answers.append(labels.index(max(faces, key=lambda f: f.score).label) if faces else -1)
        answers_arr = np.array(answers)
        block = {"pooled": recall_block(yc, answers_arr, labels)}
        for s in sorted(set(sources)):
            sel = sources == s
            block[s] = recall_block(yc[sel], answers_arr[sel], labels)
        out["crops"][part] = block
    return out


def score_model(
    work: Path, card: ModelCard, precision: str, classify: Classify, threshold: float, min_face: int
) -> dict:
    """Every part, per source and pooled, per class with 95 % CI, coverage, and by face size."""
    out: dict = {}
    for part in PARTS:
        if not crops_path(work, part).is_file():
            continue
        feats = load_split(work / "features", part)
        crops, y, _ = load_crops(work, part)
        sizes, sources = feats["size"][feats["view"] == 0], feats["source"][feats["view"] == 0]
        p_mask = classify(list(crops))[:, card.mask_index]
        pred = decide(p_mask, sizes, threshold, min_face)
        block = {
            "pooled": recall_block(y, pred, card.labels) | {"by_size": by_size(y, pred, sizes, card.labels)}
        }
        if len(set(sources)) > 1:
            for s in sorted(set(sources)):
                sel = sources == s
                block[s] = recall_block(y[sel], pred[sel], card.labels) | {
                    "by_size": by_size(y[sel], pred[sel], sizes[sel], card.labels)
                }
        out[part] = block
    return out


def xval_crops(work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    feats = load_split(work / "features", "xval")
    crops, y, _ = load_crops(work, "xval")
    return crops, y, feats["size"][feats["view"] == 0]


def error_gallery(work: Path, card: ModelCard, classify: Classify, threshold: float, path: Path) -> list[str]:
    """The most confident mistakes on xval + xtest, as a PNG; returns their captions."""
    table = load_table(work / "features")
    crops_all, y_all, captions = [], [], []
    for part in ("xval", "xtest"):
        crops, y, rows = load_crops(work, part)
        crops_all.append(crops)
        y_all.append(y)
        captions += [f"{part} {table.source[r]} {Path(str(table.path[r])).stem}" for r in rows]
    crops, y = np.concatenate(crops_all), np.concatenate(y_all)
    p_mask = classify(list(crops))[:, card.mask_index]
    worst = gallery(crops, y, p_mask, captions, card.labels, threshold, path)
    return [captions[i] for i in worst]


def choose_thresholds(work: Path, card: ModelCard, runners: dict[str, Classify]) -> dict:
    """Each model's decision threshold (pooled xval), then the smallest judgeable face (float32's)."""
    crops, y, sizes = xval_crops(work)
    out: dict = {"decision": {}}
    for precision, classify in runners.items():
        p_mask_of = lambda c, run=classify: run(list(c))[:, card.mask_index]  # noqa: E731
        out["decision"][precision] = choose_threshold(y, p_mask_of(crops))
        if precision == "float32":
            threshold = out["decision"][precision]["threshold"]
            out["min_face"] = choose_min_face(y, crops, p_mask_of, threshold, card.crop_margin, sizes)
    return out
