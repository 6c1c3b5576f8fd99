"""ImageFolder scanning, validation, fingerprint, duplicate/identity groups and the group-aware split.

No TensorFlow here: this module is imported by tests that run without it.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from masklite.image import ImageError, read_image_file
from masklite.paths import sha256_file

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
SPLITS = ("train", "val", "test")
# RMFD celebrity crops: `0_0_<name>_0014.jpg` — every file of one <name> is the same person.
_RMFD_IDENTITY = re.compile(r"^\d+_\d+_([a-z]+)_\d+\.(?:jpg|jpeg|png)$", re.IGNORECASE)
# Two images are near-duplicates when BOTH their 64-bit dHash and pHash differ in at most this many bits
# (the rule the dataset's own near_duplicates.csv used). dHash alone at 6 bits chains unrelated tight face
# crops together, even across classes (7 cross-class pairs here; 0 with both hashes).
HASH_MAX_DISTANCE = 6


class DatasetError(ValueError):
    """The dataset folder cannot be used as given; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    path: Path  # absolute
    rel: str  # "<label>/<file>", stable key across machines
    label: str


def scan_image_folder(root: Path) -> tuple[list[str], list[Sample]]:
    """One sub-folder per label (sorted names = output index order). Hidden files are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples: list[Sample] = []
    empty: list[str] = []
    for label in labels:
        files = sorted(
            p
            for p in (root / label).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            empty.append(label)
        samples += [Sample(p.resolve(), f"{label}/{p.name}", label) for p in files]
    if not labels:
        raise DatasetError(f"{root} has no class sub-folders; expected one folder of images per label")
    if empty:
        raise DatasetError(f"class folder(s) with no images in {root}: {', '.join(empty)}")
    if len(labels) < 2:
        raise DatasetError(f"{root} has only one class ({labels[0]}); a classifier needs at least two")
    return labels, samples


def load_images(samples: list[Sample], progress: bool = True) -> list[np.ndarray]:
    """Decode every image with the service's decoder; all unreadable files are reported at once."""
    from tqdm import tqdm

    images: list[np.ndarray] = []
    bad: list[str] = []
    for s in tqdm(samples, desc="decode", disable=not progress, unit="img"):
        try:
            images.append(read_image_file(str(s.path)))
        except (ImageError, OSError) as exc:
            bad.append(f"{s.rel}: {exc}")
    if bad:
        shown = "\n  ".join(bad[:20])
        more = f"\n  … and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DatasetError(f"{len(bad)} unreadable image(s); remove or fix them:\n  {shown}{more}")
    return images


def fingerprint(samples: list[Sample]) -> dict:
    """sha256 over the sorted (relative path, file sha256) list, plus counts per label."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: s.rel):
        digest.update(f"{s.rel}\t{sha256_file(s.path)}\n".encode())
    return {"sha256": digest.hexdigest(), "counts": dict(sorted(Counter(s.label for s in samples).items()))}


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash of the grey image (9x8 resize, left/right gradient signs)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def phash(rgb: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the 8x8 low-frequency DCT of the 32x32 grey image vs its median."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def near_pairs(hashes: list[int], max_distance: int = HASH_MAX_DISTANCE) -> list[tuple[int, int]]:
    """All index pairs whose 64-bit hashes differ in at most `max_distance` bits (vectorised O(n^2))."""
    h = np.array(hashes, dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    for i in range(len(h) - 1):
        x = np.bitwise_xor(h[i + 1 :], h[i])
        # popcount of uint64 via byte view
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        pairs += [(i, i + 1 + int(j)) for j in np.flatnonzero(dist <= max_distance)]
    return pairs


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def read_near_duplicates(path: Path | None) -> list[list[str]]:
    """near_duplicates.csv (group,file) -> list of groups of relative paths."""
    if path is None or not Path(path).is_file():
        return []
    groups: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            groups[row["group"]].append(row["file"])
    return list(groups.values())


def identity_key(sample: Sample) -> str | None:
    m = _RMFD_IDENTITY.match(Path(sample.rel).name)
    return f"{sample.label}:{m.group(1).lower()}" if m else None


def build_groups(
    samples: list[Sample],
    dhashes: list[int],
    phashes: list[int],
    listed_groups: list[list[str]],
) -> tuple[list[int], dict[str, int]]:
    """Group id per sample = connected components of listed near-duplicates ∪ hash pairs ∪ identity.

    Returns (group ids, how many merges each source contributed).
    """
    index = {s.rel: i for i, s in enumerate(samples)}
    uf = _UnionFind(len(samples))
    stats = {"near_duplicates_csv": 0, "hash": 0, "identity": 0}
    for group in listed_groups:
        members = [index[r] for r in group if r in index]
        for m in members[1:]:
            stats["near_duplicates_csv"] += uf.find(m) != uf.find(members[0])
            uf.union(members[0], m)
    for a, b in sorted(set(near_pairs(dhashes)) & set(near_pairs(phashes))):
        stats["hash"] += uf.find(a) != uf.find(b)
        uf.union(a, b)
    first_of: dict[str, int] = {}
    for i, s in enumerate(samples):
        key = identity_key(s)
        if key is None:
            continue
        if key in first_of:
            stats["identity"] += uf.find(i) != uf.find(first_of[key])
            uf.union(first_of[key], i)
        else:
            first_of[key] = i
    roots = [uf.find(i) for i in range(len(samples))]
    renumber = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [renumber[r] for r in roots], stats


def group_split(
    labels: list[str],
    groups: list[int],
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    seed: int = 0,
) -> list[str]:
    """Stratified, group-aware split: whole groups go to one split; each class keeps the fractions.

    A group takes the label of its majority. Per class, groups are shuffled (seeded), then placed
    largest first into the split furthest below its target count — big identity groups land where
    they fit and small groups fine-tune the ratio.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    group_label = {g: Counter(labels[i] for i in idx).most_common(1)[0][0] for g, idx in members.items()}
    rng = np.random.default_rng(seed)
    assignment = [""] * len(labels)
    for cls in sorted(set(labels)):
        gids = [g for g in members if group_label[g] == cls]
        gids = [gids[k] for k in rng.permutation(len(gids))]
        gids.sort(key=lambda g: -len(members[g]))  # stable: shuffled order within equal sizes
        total = sum(len(members[g]) for g in gids)
        filled = dict.fromkeys(SPLITS, 0)
        for g in gids:
            deficit = {s: fractions[k] * total - filled[s] for k, s in enumerate(SPLITS)}
            target = max(SPLITS, key=lambda s: deficit[s])
            filled[target] += len(members[g])
            for i in members[g]:
                assignment[i] = target
    return assignment
