"""`prepare`: scan the ImageFolder, find the face in each image, group near-duplicates/identities, split.

Crop rule (documented in the card): the detector's best-scoring face is the crop, grown by
`crop_margin` exactly as the service does; when no face is found the whole image is the crop.
Outputs (written to a temp folder, then renamed, so a failure leaves nothing half-way; masklite.files):
    <work>/prepare/manifest.csv   one row per image: rel, label, split, group, box, crop source, score
    <work>/prepare/report.json    fingerprint, per-class crop counts, group stats, split sizes
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from masklite.card import DetectorSpec
from masklite.faces import load_detector
from masklite.files import staged_dir
from masklite.paths import sha256_file
from training.config import PrepareConfig
from training.dataset import (
    HASH_MAX_DISTANCE,
    SPLITS,
    build_groups,
    dhash,
    fingerprint,
    group_split,
    load_images,
    phash,
    read_near_duplicates,
    scan_image_folder,
)
from training.sources import FACES_FILE, LICENCES, collect_faces, part_groups, summarise, write_faces

PREPARE_DIR = "prepare"
MANIFEST = "manifest.csv"
REPORT = "report.json"


def prepare(
    data_dir: Path,
    detector_path: Path,
    work: Path,
    cfg: PrepareConfig,
    progress: bool = True,
    datasets_root: Path | None = None,
) -> dict:
    """The prepare stage: `data_dir` (+ the cross-source sets under `datasets_root`, training.sources;
    None = none) -> <work>/prepare."""
    labels, samples = scan_image_folder(data_dir)
    images = load_images(samples, progress=progress)  # raises on any unreadable file, before writing
    with staged_dir(work / PREPARE_DIR) as tmp:
        report = _prepare(data_dir, detector_path, labels, samples, images, cfg, tmp, progress)
        if datasets_root is not None:
            report["cross_source"] = _cross_source(Path(datasets_root), detector_path, tmp, progress)
            (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _prepare(
    data_dir, detector_path, labels, samples, images, cfg: PrepareConfig, tmp: Path, progress: bool
) -> dict:
    hashes = [dhash(im) for im in tqdm(images, desc="dhash", disable=not progress, unit="img")]
    phashes = [phash(im) for im in tqdm(images, desc="phash", disable=not progress, unit="img")]
    listed = read_near_duplicates(Path(data_dir) / "near_duplicates.csv")
    groups, merge_stats = build_groups(samples, hashes, phashes, listed)
    sample_labels = [s.label for s in samples]
    splits = group_split(sample_labels, groups, cfg.split_fractions, cfg.split_seed)

    # the service's detector (LiteRT), at this build's thresholds
    spec = DetectorSpec(
        score_threshold=cfg.detector_score_threshold, nms_threshold=cfg.detector_nms_threshold
    )
    detector = load_detector(spec, path=detector_path)
    rows = []
    for s, im, g, sp, h in tqdm(
        list(zip(samples, images, groups, splits, hashes, strict=True)),
        desc="detect",
        disable=not progress,
        unit="img",
    ):
        faces = detector.detect(im)
        height, width = im.shape[:2]
        if faces:
            box, score, source = faces[0].box, faces[0].score, "face"
            landmarks = " ".join(f"{v:.2f}" for point in faces[0].landmarks for v in point)
        else:
            box, score, source, landmarks = (0, 0, width, height), float("nan"), "whole_image", ""
        rows.append(
            {
                "rel": s.rel,
                "label": s.label,
                "split": sp,
                "group": g,
                "dhash": f"{h:016x}",
                "width": width,
                "height": height,
                "x": box[0],
                "y": box[1],
                "w": box[2],
                "h": box[3],
                "crop_source": source,
                "n_faces": len(faces),
                "det_score": score,
                "landmarks": landmarks,
            }
        )
    df = pd.DataFrame(rows)
    df.to_csv(tmp / MANIFEST, index=False)

    crop_counts = {
        lab: {k: int(v) for k, v in Counter(df.loc[df.label == lab, "crop_source"]).items()} for lab in labels
    }
    multi = {lab: int(((df.label == lab) & (df.n_faces > 1)).sum()) for lab in labels}
    split_sizes = {
        sp: {lab: int(((df.split == sp) & (df.label == lab)).sum()) for lab in labels} for sp in SPLITS
    }
    group_sizes = Counter(groups)
    report = {
        "data_dir": str(Path(data_dir).resolve()),
        "labels": labels,
        "fingerprint": fingerprint(samples),
        "num_images": len(samples),
        "crop_rule": (
            "best-scoring YuNet face grown by crop_margin (masklite.faces.crop_face); "
            "no face found -> the whole image is the crop"
        ),
        "crop_counts": crop_counts,
        "images_with_several_faces": multi,
        "groups": {
            "num_groups": len(group_sizes),
            "num_multi_member_groups": sum(1 for n in group_sizes.values() if n > 1),
            "largest_group": max(group_sizes.values()),
            "merges": merge_stats,
            "hash_max_distance": HASH_MAX_DISTANCE,
            "sources": (
                "near_duplicates.csv ∪ (dHash and pHash both <= 6 bits) ∪ RMFD identity (N_N_<name>_NNNN.jpg)"
            ),
        },
        "splits": {"fractions": list(cfg.split_fractions), "seed": cfg.split_seed, "sizes": split_sizes},
        "config": asdict(cfg),
        "detector": {
            "name": "yunet",
            "file": Path(detector_path).name,
            "sha256": sha256_file(Path(detector_path)),
            "score_threshold": cfg.detector_score_threshold,
            "nms_threshold": cfg.detector_nms_threshold,
        },
    }
    (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _cross_source(root: Path, detector_path: Path, tmp: Path, progress: bool) -> dict:
    if not root.is_dir():
        raise FileNotFoundError(f"datasets folder not found: {root}")
    faces = collect_faces(root, detector_path, progress)
    write_faces(faces, tmp / FACES_FILE)
    (tmp / "cross_source_parts.json").write_text(json.dumps(part_groups(faces), indent=1) + "\n")
    return {"root": str(root.resolve()), "faces": summarise(faces), "licences": LICENCES}


def load_manifest(prepare_dir: Path) -> tuple[pd.DataFrame, dict]:
    manifest = Path(prepare_dir) / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `python -m training prepare` first")
    return pd.read_csv(manifest), json.loads((Path(prepare_dir) / REPORT).read_text())
