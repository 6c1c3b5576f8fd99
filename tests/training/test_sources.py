"""The cross-source sets: three parts, disjoint by scene or source folder, fixed by a seed."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import parse_voc
from training.sources import (
    PARTS,
    SOURCE_FOLDERS,
    assign_parts,
    collect_faces,
    part_groups,
    read_faces,
    write_faces,
)


def test_assign_parts_is_fixed_close_to_the_fractions_and_keeps_pins() -> None:
    sizes = {f"scene{i:03d}": 1 + i % 7 for i in range(200)}
    first, again = assign_parts(sizes), assign_parts(sizes)
    assert first == again
    assert set(first.values()) == set(PARTS)
    total = sum(sizes.values())
    for part, share in zip(PARTS, (0.6, 0.2, 0.2), strict=True):
        got = sum(n for g, n in sizes.items() if first[g] == part) / total
        assert abs(got - share) < 0.03, (part, got)
    pinned = assign_parts(sizes, pinned={"scene006": "xtest"})
    assert pinned["scene006"] == "xtest"
    assert assign_parts(sizes, seed=1) != first


@pytest.fixture(scope="module")
def faces(datasets_root: Path, detector_path: Path):
    return collect_faces(datasets_root, detector_path, progress=False)


def test_parts_are_disjoint_by_scene_or_folder(faces) -> None:
    parts_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in faces:
        parts_of[(f.source, f.group)].add(f.part)
    straddling = {k: v for k, v in parts_of.items() if len(v) > 1}
    assert not straddling, f"groups in several parts: {list(straddling)[:5]}"
    by_source = part_groups(faces)
    for source in ("macwinwin", "wider", "rmfd"):
        assert set(by_source[source]) == set(PARTS), source
    assert set(by_source["scenes"]) == {"test"}  # scenes-sample is a test only


def annotated_counts(root: Path) -> dict[tuple[str, str], int]:
    """(source, label) -> faces, read straight from the data (VOC objects; RMFD's manifest rows) with the
    tests' own parser, not training's: what `collect_faces` must keep, whatever version of the data."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for source in ("macwinwin", "wider", "scenes"):
        for xml_path in (root / SOURCE_FOLDERS[source] / "annotations").glob("*.xml"):
            for face in parse_voc(xml_path)[3]:
                counts[(source, face.label)] += 1
    with open(root / SOURCE_FOLDERS["rmfd"] / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            counts[("rmfd", row["label"])] += 1
    return dict(counts)


def test_every_annotated_face_is_kept_with_its_label(faces, datasets_root: Path) -> None:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for f in faces:
        counts[(f.source, f.label)] += 1
    # exactly the data's own annotations (a refreshed dataset changes both sides), not the READMEs' numbers
    assert dict(counts) == annotated_counts(datasets_root)
    # which classes each source brings is the design of the split (WIDER: unmasked only; RMFD: masked
    # only); the sizes need only be big enough to score a part on (READMEs: 408/557, 449, 420, 88/30)
    assert {k for k in counts} == {
        ("macwinwin", "with_mask"), ("macwinwin", "without_mask"), ("wider", "without_mask"),
        ("rmfd", "with_mask"), ("scenes", "with_mask"), ("scenes", "without_mask"),
    }  # fmt: skip
    assert min(counts.values()) >= 30, dict(counts)
    detector_boxes = sum(f.box_source == "detector" for f in faces) / len(faces)
    assert detector_boxes > 0.85  # most crops are what serving sees
    assert all(len(f.landmarks) == 10 for f in faces if f.box_source == "detector")


def test_faces_round_trip_through_csv(faces, tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    write_faces(faces[:50], path)
    back = read_faces(path)
    assert [(f.source, f.group, f.part, f.label, f.box, f.size) for f in back] == [
        (f.source, f.group, f.part, f.label, tuple(f.box), f.size) for f in faces[:50]
    ]
    for a, b in zip(back, faces[:50], strict=True):
        assert a.landmarks == pytest.approx(b.landmarks, abs=0.01)
