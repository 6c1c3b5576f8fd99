"""Cross-source check on annotated scene photos (Pascal VOC boxes), independent of the training set.

(a) annotated: crop each annotated face box with the card's margin and classify it;
(b) detected: run the service's detector on the whole scene, match detections to annotations at
    IoU >= 0.3 (greedy, best IoU first), report face recall and the label accuracy on matched faces.
Not every face in these scenes is annotated, so unmatched detections are counted, not called errors.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masklite.faces import YuNet, crop_face, match_boxes
from masklite.image import read_image_file

MATCH_IOU = 0.3


@dataclass
class Scene:
    name: str
    rgb: np.ndarray
    boxes: list[tuple[int, int, int, int]]  # x, y, w, h
    labels: list[str]


@dataclass
class SceneAnnotation:
    name: str
    filename: str
    boxes: list[tuple[int, int, int, int]]  # x, y, w, h
    labels: list[str]


def load_scene_annotations(scenes_dir: Path) -> list[SceneAnnotation]:
    """The VOC files of a scenes folder (`annotations/*.xml` beside `images/`), without the images."""
    ann_dir = Path(scenes_dir) / "annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"no annotations/ folder in {scenes_dir}")
    out = []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        root = ET.parse(xml_path).getroot()
        boxes, labels = [], []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            x0, y0, x1, y1 = (int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
            labels.append(obj.findtext("name").strip())
        out.append(
            SceneAnnotation(xml_path.stem, root.findtext("filename") or f"{xml_path.stem}.jpg", boxes, labels)
        )
    if not out:
        raise FileNotFoundError(f"no VOC annotations in {ann_dir}")
    return out


def load_scenes(scenes_dir: Path) -> list[Scene]:
    images = Path(scenes_dir) / "images"
    return [
        Scene(a.name, read_image_file(str(images / a.filename)), a.boxes, a.labels)
        for a in load_scene_annotations(scenes_dir)
    ]


def match(
    annotated: list[tuple], detected: list[tuple], threshold: float = MATCH_IOU
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best IoU first: [(annotation index, detection index)]."""
    return match_boxes(annotated, detected, threshold)


def annotated_crops(scenes: list[Scene], margin: float) -> tuple[list[np.ndarray], list[str]]:
    crops, labels = [], []
    for s in scenes:
        for box, lab in zip(s.boxes, s.labels, strict=True):
            crops.append(crop_face(s.rgb, box, margin))
            labels.append(lab)
    return crops, labels


def detected_crops(scenes: list[Scene], detector: YuNet, margin: float) -> dict:
    """Detector crops matched to annotations, plus recall counts per label."""
    crops, labels = [], []
    annotated = {lab: 0 for s in scenes for lab in s.labels}
    found = dict.fromkeys(annotated, 0)
    detections = unmatched = 0
    for s in scenes:
        faces = detector.detect(s.rgb)
        det_boxes = [f.box for f in faces]
        detections += len(det_boxes)
        pairs = match(s.boxes, det_boxes)
        unmatched += len(det_boxes) - len(pairs)
        for lab in s.labels:
            annotated[lab] += 1
        for i, j in pairs:
            found[s.labels[i]] += 1
            crops.append(crop_face(s.rgb, det_boxes[j], margin))
            labels.append(s.labels[i])
    return {
        "crops": crops,
        "labels": labels,
        "annotated": annotated,
        "found": found,
        "detections": detections,
        "unmatched_detections": unmatched,
    }


def scene_metrics(
    scenes: list[Scene],
    label_names: list[str],
    classify: Callable[[list[np.ndarray]], np.ndarray],
    margin: float,
    detector: YuNet | None,
) -> dict:
    """`classify`: list of RGB crops -> (N, classes) probabilities."""
    out: dict = {}
    crops, labs = annotated_crops(scenes, margin)
    y = np.array([label_names.index(v) for v in labs])
    pred = classify(crops).argmax(axis=1)
    out["annotated"] = _acc_block(y, pred, label_names)
    if detector is not None:
        det = detected_crops(scenes, detector, margin)
        total, hit = sum(det["annotated"].values()), sum(det["found"].values())
        block: dict = {
            "face_recall": hit / total if total else float("nan"),
            "recall_per_class": {k: det["found"][k] / v for k, v in det["annotated"].items() if v},
            "annotated": total,
            "matched": hit,
            "detections": det["detections"],
            "unmatched_detections": det["unmatched_detections"],
            "match_iou": MATCH_IOU,
        }
        if det["crops"]:
            yd = np.array([label_names.index(v) for v in det["labels"]])
            block.update(_acc_block(yd, classify(det["crops"]).argmax(axis=1), label_names))
        out["detected"] = block
    return out


def _acc_block(y: np.ndarray, pred: np.ndarray, label_names: list[str]) -> dict:
    per_class = {
        lab: {
            "n": int((y == k).sum()),
            "accuracy": float((pred[y == k] == k).mean()) if (y == k).any() else None,
        }
        for k, lab in enumerate(label_names)
    }
    recalls = [v["accuracy"] for v in per_class.values() if v["accuracy"] is not None]
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "per_class": per_class,
    }
