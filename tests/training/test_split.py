"""The group-aware, stratified split: no group straddles splits, and each class keeps the fractions."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from masklite.image import read_image_file
from training.dataset import (
    SPLITS,
    build_groups,
    dhash,
    group_split,
    identity_key,
    near_pairs,
    phash,
    read_near_duplicates,
    scan_image_folder,
)

FRACTIONS = (0.70, 0.15, 0.15)


def _assert_split(labels: list[str], groups: list[int], splits: list[str], tol: float) -> None:
    by_group = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        by_group[g].add(s)
    straddling = {g: s for g, s in by_group.items() if len(s) > 1}
    assert not straddling, f"{len(straddling)} groups straddle splits, e.g. {list(straddling.items())[:3]}"
    assert set(splits) == set(SPLITS)
    for cls in set(labels):
        n = sum(1 for lab in labels if lab == cls)
        counts = Counter(s for lab, s in zip(labels, splits, strict=True) if lab == cls)
        for k, s in enumerate(SPLITS):
            share = counts[s] / n
            assert abs(share - FRACTIONS[k]) <= tol, f"{cls} {s}: {share:.3f} vs {FRACTIONS[k]} (n={n})"


def test_synthetic_groups_do_not_straddle_and_stay_stratified():
    rng = np.random.default_rng(1)
    labels, groups = [], []
    gid = 0
    for cls, n_groups in (("a", 300), ("b", 200)):
        for _ in range(n_groups):
            size = int(rng.choice([1, 1, 1, 2, 3, 8, 25]))
            labels += [cls] * size
            groups += [gid] * size
            gid += 1
    splits = group_split(labels, groups, FRACTIONS, seed=3)
    _assert_split(labels, groups, splits, tol=0.02)
    assert splits == group_split(labels, groups, FRACTIONS, seed=3), "same seed must give the same split"
    assert splits != group_split(labels, groups, FRACTIONS, seed=4)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        group_split(["a", "b"], [0, 1], (0.5, 0.2, 0.2))


def test_identity_key_reads_rmfd_names():
    from pathlib import Path

    from training.dataset import Sample

    s = Sample(Path("/x"), "without_mask/0_0_anhu_0004.jpg", "without_mask")
    assert identity_key(s) == "without_mask:anhu"
    assert identity_key(Sample(Path("/x"), "with_mask/with_mask12.jpg", "with_mask")) is None


def test_hashes_find_resized_copies_not_different_images(data_dir):
    a = read_image_file(
        str(data_dir / "with_mask" / sorted(p.name for p in (data_dir / "with_mask").iterdir())[5])
    )
    b = read_image_file(
        str(data_dir / "without_mask" / sorted(p.name for p in (data_dir / "without_mask").iterdir())[400])
    )
    import cv2

    a_small = cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)
    for h in (dhash, phash):
        pairs = near_pairs([h(a), h(a_small), h(b)])
        assert (0, 1) in pairs, f"{h.__name__}: a resized copy must be a near-duplicate"
        assert (0, 2) not in pairs and (1, 2) not in pairs


def test_real_dataset_split_keeps_groups_and_strata(data_dir):
    """The real file list with the dataset's near-duplicate groups and RMFD identities (hash pairs are
    covered above; decoding all 4k images would make this test slow)."""
    labels, samples = scan_image_folder(data_dir)
    rng = np.random.default_rng(0)  # random 64-bit hashes: ~32 bits apart, so no hash pairs
    dh, ph = ([int(v) for v in rng.integers(0, 2**63, len(samples))] for _ in range(2))
    listed = read_near_duplicates(data_dir / "near_duplicates.csv")
    assert listed, "near_duplicates.csv should list groups"
    groups, stats = build_groups(samples, dh, ph, listed)
    assert stats["hash"] == 0
    assert stats["identity"] > 500 and stats["near_duplicates_csv"] > 50
    sample_labels = [s.label for s in samples]
    splits = group_split(sample_labels, groups, FRACTIONS, seed=0)
    _assert_split(sample_labels, groups, splits, tol=0.015)
    # every listed near-duplicate group and every identity sits in one split
    split_of = {s.rel: sp for s, sp in zip(samples, splits, strict=True)}
    for group in listed:
        assert len({split_of[r] for r in group if r in split_of}) == 1
    by_identity = defaultdict(set)
    for s, sp in zip(samples, splits, strict=True):
        if (key := identity_key(s)) is not None:
            by_identity[key].add(sp)
    assert by_identity and all(len(v) == 1 for v in by_identity.values())


def test_shipped_card_split_report(models_dir):
    from masklite.card import load_card

    card = load_card(models_dir)
    sizes = card.splits["sizes"]
    totals = {lab: sum(sizes[s][lab] for s in SPLITS) for lab in card.labels}
    for lab in card.labels:
        for k, s in enumerate(SPLITS):
            assert abs(sizes[s][lab] / totals[lab] - FRACTIONS[k]) < 0.02
    assert totals == card.dataset["fingerprint"]["counts"]
