"""The cross-source sets: three parts, disjoint by scene or source folder, fixed by a seed."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from training.sources import PARTS, assign_parts, collect_faces, part_groups, read_faces, write_faces


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


def test_every_annotated_face_is_kept_with_its_label(faces) -> None:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for f in faces:
        counts[(f.source, f.label)] += 1
    # the dataset READMEs' counts
    assert counts[("macwinwin", "with_mask")] == 408 and counts[("macwinwin", "without_mask")] == 557
    assert counts[("wider", "without_mask")] == 449 and ("wider", "with_mask") not in counts
    assert counts[("rmfd", "with_mask")] == 420
    assert counts[("scenes", "with_mask")] == 88 and counts[("scenes", "without_mask")] == 30
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
