"""Faces from sources other than the training folder, split three ways by scene or source folder.

All sets come from one root ($MASKLITE_DATASETS_DIR, e.g. ../shared/datasets):

| source      | folder                      | faces                         | split unit            |
|-------------|-----------------------------|-------------------------------|-----------------------|
| macwinwin   | macwinwin-scenes            | masked + unmasked, VOC boxes  | scene                 |
| wider       | wider-val-sample            | unmasked, VOC boxes           | scene                 |
| rmfd        | rmfd-rwmfd1-masked-faces    | masked crops                  | upstream folder       |
| scenes      | scenes-sample               | masked + unmasked, VOC boxes  | test only (30 scenes) |

Parts: `train`, `xval` (cross-source validation: picks models and thresholds) and `xtest` (touched only
for the card). Scene faces are cropped with the service's detector matched to the annotated box by IoU,
so training sees what serving sees; an annotated face the detector misses keeps its annotated box.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masklite.card import DetectorSpec
from masklite.faces import YuNet, load_detector, match_boxes
from masklite.image import read_image_file
from training.scenes import MATCH_IOU, load_scene_annotations

SOURCE_FOLDERS = {
    "macwinwin": "macwinwin-scenes",
    "wider": "wider-val-sample",
    "rmfd": "rmfd-rwmfd1-masked-faces",
    "scenes": "scenes-sample",
}
FACES_FILE = "faces.csv"  # written by `prepare` beside manifest.csv
CROSS_SOURCES = ("macwinwin", "wider", "rmfd")  # split three ways; scenes-sample is a test only
PARTS = ("train", "xval", "xtest")
PART_FRACTIONS = (0.6, 0.2, 0.2)
SPLIT_SEED = 12
# Training crops come from every detection down to this score, so that masked faces (scored lower by
# YuNet) get detector boxes too; the service's own threshold is chosen on xval (see evaluate).
CROP_DETECT_THRESHOLD = 0.3
RMFD_MARGIN = 0.15  # the rmfd crops are the YuNet box plus 15 % per side (their README)
LICENCES = {
    "chandrikadeb7": "MIT repository of third-party web images; research/evaluation use",
    "macwinwin": "no licence stated (images from Google/Baidu); research use only",
    "wider": "WIDER FACE: research use (non-commercial) only",
    "rmfd": "RMFD (Wuhan University), no licence stated; research use only",
    "scenes": "same source as macwinwin: no licence stated; research use only",
}


@dataclass
class FaceRecord:
    """One labelled face: where it is, which part it belongs to, and the box the crop is cut from."""

    source: str
    file: str  # relative to the source folder
    group: str  # the split unit: scene name or upstream folder
    part: str
    label: str
    box: tuple[int, int, int, int]  # the crop box (detector box when matched), x y w h
    size: int  # shorter side of the annotated box, original pixels
    box_source: str  # "detector" or "annotation"
    det_score: float = float("nan")
    landmarks: list[float] = field(default_factory=list)  # 10 numbers, or empty


def assign_parts(
    group_sizes: dict[str, int],
    fractions: tuple[float, ...] = PART_FRACTIONS,
    seed: int = SPLIT_SEED,
    pinned: dict[str, str] | None = None,
) -> dict[str, str]:
    """Whole groups to parts, close to `fractions` of the faces: shuffled (seeded), then largest first
    into the part furthest below its target. `pinned` groups go where they are told (and count)."""
    total = sum(group_sizes.values())
    filled = dict.fromkeys(PARTS, 0)
    out: dict[str, str] = {}
    for g, part in (pinned or {}).items():
        out[g] = part
        filled[part] += group_sizes[g]
    free = sorted(g for g in group_sizes if g not in out)
    random.Random(seed).shuffle(free)
    free.sort(key=lambda g: -group_sizes[g])  # stable: shuffled order among equal sizes
    for g in free:
        part = max(PARTS, key=lambda p: fractions[PARTS.index(p)] * total - filled[p])
        out[g] = part
        filled[part] += group_sizes[g]
    return out


def _scene_faces(
    source: str, folder: Path, detector: YuNet, parts: dict[str, str] | None, progress: bool
) -> Iterator[FaceRecord]:
    for ann in tqdm(load_scene_annotations(folder), desc=f"faces {source}", disable=not progress):
        rgb = read_image_file(str(folder / "images" / ann.filename))
        found = detector.detect(rgb)
        pairs = dict(match_boxes(ann.boxes, [f.box for f in found], MATCH_IOU))
        part = parts[ann.name] if parts is not None else "test"
        for i, (box, label) in enumerate(zip(ann.boxes, ann.labels, strict=True)):
            rec = FaceRecord(
                source,
                f"images/{ann.filename}",
                ann.name,
                part,
                label,
                box,
                min(box[2], box[3]),
                "annotation",
            )
            if i in pairs:
                face = found[pairs[i]]
                rec.box, rec.box_source, rec.det_score = face.box, "detector", face.score
                rec.landmarks = [float(v) for point in face.landmarks for v in point]
            yield rec


def _rmfd_faces(folder: Path, detector: YuNet, progress: bool) -> list[FaceRecord]:
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    group_of = {r["file"]: r["source_path"].split("/")[1] for r in rows}
    sizes: dict[str, int] = defaultdict(int)
    for g in group_of.values():
        sizes[g] += 1
    biggest = max(sizes, key=lambda g: sizes[g])
    parts = assign_parts(sizes, pinned={biggest: "train"})  # 38 % of the crops: it cannot be a test part
    out = []
    for r in tqdm(rows, desc="faces rmfd", disable=not progress):
        rgb = read_image_file(str(folder / r["file"]))
        h, w = rgb.shape[:2]
        # the face box inside the stored crop (the crop is the box grown by 15 % per side)
        inner = (round(w * RMFD_MARGIN / 1.3), round(h * RMFD_MARGIN / 1.3), round(w / 1.3), round(h / 1.3))
        rec = FaceRecord(
            "rmfd",
            r["file"],
            group_of[r["file"]],
            parts[group_of[r["file"]]],
            r["label"],
            inner,
            min(int(r["face_xmax"]) - int(r["face_xmin"]), int(r["face_ymax"]) - int(r["face_ymin"])),
            "annotation",
        )
        found = detector.detect(rgb)
        pairs = match_boxes([inner], [f.box for f in found], MATCH_IOU)
        if pairs:
            face = found[pairs[0][1]]
            rec.box, rec.box_source, rec.det_score = face.box, "detector", face.score
            rec.landmarks = [float(v) for point in face.landmarks for v in point]
        out.append(rec)
    return out


def collect_faces(root: Path, detector_path: Path, progress: bool = True) -> list[FaceRecord]:
    """Every face of the cross-source sets and of scenes-sample, with its part. Sources whose folder is
    missing are skipped (a build test runs on a few images per source)."""
    detector = load_detector(DetectorSpec(), path=detector_path, score_threshold=CROP_DETECT_THRESHOLD)
    faces: list[FaceRecord] = []
    for source in ("macwinwin", "wider"):
        folder = root / SOURCE_FOLDERS[source]
        if (folder / "annotations").is_dir():
            anns = load_scene_annotations(folder)
            parts = assign_parts({a.name: len(a.boxes) for a in anns})
            faces += _scene_faces(source, folder, detector, parts, progress)
    if (root / SOURCE_FOLDERS["rmfd"] / "manifest.csv").is_file():
        faces += _rmfd_faces(root / SOURCE_FOLDERS["rmfd"], detector, progress)
    if (root / SOURCE_FOLDERS["scenes"] / "annotations").is_dir():
        faces += _scene_faces("scenes", root / SOURCE_FOLDERS["scenes"], detector, None, progress)
    return faces


def write_faces(faces: list[FaceRecord], path: Path) -> None:
    rows = [asdict(f) for f in faces]
    for r in rows:
        r["box"] = " ".join(map(str, r["box"]))
        r["landmarks"] = " ".join(f"{v:.2f}" for v in r["landmarks"])
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=list(rows[0]) if rows else [f.name for f in FaceRecord.__dataclass_fields__.values()],
        )
        writer.writeheader()
        writer.writerows(rows)


def read_faces(path: Path) -> list[FaceRecord]:
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out.append(
                FaceRecord(
                    r["source"],
                    r["file"],
                    r["group"],
                    r["part"],
                    r["label"],
                    tuple(int(v) for v in r["box"].split()),  # type: ignore[arg-type]
                    int(r["size"]),
                    r["box_source"],
                    float(r["det_score"]),
                    [float(v) for v in r["landmarks"].split()],
                )
            )
    return out


def landmark_points(values: list[float]) -> np.ndarray | None:
    return np.asarray(values, np.float32).reshape(5, 2) if len(values) == 10 else None


def summarise(faces: list[FaceRecord]) -> dict:
    """Faces per source, part and label, plus how many crops came from the detector."""
    out: dict = {}
    for f in faces:
        block = out.setdefault(f.source, {}).setdefault(f.part, {"groups": set()})
        block[f.label] = block.get(f.label, 0) + 1
        block["detector_boxes"] = block.get("detector_boxes", 0) + (f.box_source == "detector")
        block["groups"].add(f.group)
    for parts in out.values():
        for block in parts.values():
            block["groups"] = len(block["groups"])
    return out


def part_groups(faces: list[FaceRecord]) -> dict[str, dict[str, list[str]]]:
    """source -> part -> sorted group names: the recorded split."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in faces:
        out[f.source][f.part].add(f.group)
    return {s: {p: sorted(g) for p, g in parts.items()} for s, parts in out.items()}
