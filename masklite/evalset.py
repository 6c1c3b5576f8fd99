"""Labelled evaluation sets: a zip with one folder per label, read in memory, validated, preprocessed.

The one loader for both the shipped set (models/evalset.zip, written by training) and a set a client
uploads to the service. Nothing is ever extracted to disk: each member is read into memory, checked, decoded
with `decode_image`, and resized to the card's input size at once, so memory stays N x H x W x 3 bytes.

Accepted layouts (labels must be exactly the card's labels, each with at least one image):
    with_mask/0001.jpg  without_mask/0002.png  ...
    anything/with_mask/0001.jpg  anything/without_mask/...      (one wrapping folder, as zip tools make)
`__MACOSX/` and hidden files (".DS_Store") are ignored; every other file must be an image.
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from masklite.card import ModelCard
from masklite.classifier import normalize, resize_crop
from masklite.image import ImageError, decode_image

EVALSET_FILENAME = "evalset.zip"


class EvalSetError(ValueError):
    """The zip is not a valid evaluation set. The message says why and is safe to show a client."""


@dataclass(frozen=True)
class EvalSetLimits:
    max_zip_bytes: int = 10_000_000
    max_uncompressed_bytes: int = 100_000_000
    max_files: int = 5_000
    max_image_pixels: int = 4_000_000
    # A member that inflates more than this is treated as a zip bomb (JPEG/PNG barely compress).
    max_compression_ratio: float = 100.0


@dataclass
class EvalSet:
    """Images resized to the model input (uint8) and their label indices in the card's order."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    label_names: list[str]
    names: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        counts = Counter(int(i) for i in self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}

    def inputs(self, card: ModelCard) -> np.ndarray:
        """Float32 model inputs, normalised exactly as `masklite.classifier.preprocess.preprocess` does."""
        return normalize(self.images, card.input)

    def subset(self, max_images: int | None, seed: int = 0) -> EvalSet:
        """A deterministic, label-stratified subset of at most `max_images` images."""
        if max_images is None or max_images >= len(self):
            return self
        keep = stratified_pick(self.labels, len(self.label_names), max_images, seed)
        return EvalSet(
            self.images[keep],
            self.labels[keep],
            self.label_names,
            [self.names[i] for i in keep] if self.names else [],
            _subset_source(self.source, len(keep), len(self), seed),
        )


def stratified_pick(labels: np.ndarray, n_labels: int, max_images: int, seed: int) -> list[int]:
    """Sorted indices of a seeded, label-stratified sample of at most `max_images`."""
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    share = max_images / len(labels)
    for label in range(n_labels):
        idx = np.flatnonzero(labels == label)
        take = max(1, int(round(len(idx) * share))) if len(idx) else 0
        keep.extend(rng.choice(idx, size=min(take, len(idx)), replace=False).tolist())
    return sorted(keep)[:max_images]


def _subset_source(source: str, kept: int, total: int, seed: int) -> str:
    return f"{source} (subset {kept}/{total}, seed {seed})"


def default_evalset_path(models_dir: Path) -> Path:
    return models_dir / EVALSET_FILENAME


def load_evalset_file(
    path: Path,
    card: ModelCard,
    limits: EvalSetLimits | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> EvalSet:
    limits = limits or EvalSetLimits(max_zip_bytes=max(EvalSetLimits.max_zip_bytes, path.stat().st_size))
    return load_evalset(path.read_bytes(), card, limits, source=path.name, max_images=max_images, seed=seed)


def load_evalset(
    data: bytes,
    card: ModelCard,
    limits: EvalSetLimits | None = None,
    source: str = "upload",
    max_images: int | None = None,
    seed: int = 0,
) -> EvalSet:
    """Validate and decode a zip of labelled images, entirely in memory. Raises EvalSetError.

    With `max_images`, every member is still checked but only the same stratified sample that
    `EvalSet.subset(max_images, seed)` would keep is decoded."""
    limits = limits or EvalSetLimits()
    if not data:
        raise EvalSetError("the evaluation set is empty (0 bytes)")
    if len(data) > limits.max_zip_bytes:
        raise EvalSetError(f"the zip is {len(data):,} bytes; the limit is {limits.max_zip_bytes:,}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise EvalSetError(f"not a readable zip file: {exc}") from exc
    with archive:
        members = _checked_members(archive, card, limits)
        total = len(members)
        if max_images is not None and max_images < total:
            member_labels = np.array([card.labels.index(label) for _, label in members])
            members = [members[i] for i in stratified_pick(member_labels, len(card.labels), max_images, seed)]
            source = _subset_source(source, len(members), total, seed)
        size = tuple(card.input.size)
        images = np.empty((len(members), size[0], size[1], 3), dtype=np.uint8)
        labels = np.empty(len(members), dtype=np.int64)
        names: list[str] = []
        for i, (info, label) in enumerate(members):
            try:
                raw = archive.open(info).read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, NotImplementedError) as exc:
                raise EvalSetError(f"{_show(info.filename)}: cannot be read from the zip: {exc}") from exc
            if len(raw) > info.file_size:
                raise EvalSetError(f"{_show(info.filename)}: larger than the size the zip declares")
            try:
                rgb = decode_image(raw, max_pixels=limits.max_image_pixels)
            except ImageError as exc:
                raise EvalSetError(f"{_show(info.filename)}: not a usable image: {exc}") from exc
            images[i] = resize_crop(rgb, size)
            labels[i] = card.labels.index(label)
            names.append(info.filename)
    return EvalSet(images, labels, list(card.labels), names, source)


def _checked_members(
    archive: zipfile.ZipFile, card: ModelCard, limits: EvalSetLimits
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every image member with its label, after the path, type and size checks (no data read yet)."""
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise EvalSetError(f"the zip has {len(infos):,} entries; the limit is {limits.max_files:,}")
    files: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    total = 0
    for info in infos:
        name = info.filename
        _check_path(name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise EvalSetError(f"{_show(name)}: symbolic links are not allowed")
        if info.flag_bits & 0x1:
            raise EvalSetError(f"{_show(name)}: encrypted members are not supported")
        parts = tuple(p for p in name.split("/") if p)
        if info.is_dir() or _ignored(parts):
            continue
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise EvalSetError(
                f"the zip inflates to more than {limits.max_uncompressed_bytes:,} bytes (the limit)"
            )
        if info.file_size > 1024 and info.file_size > limits.max_compression_ratio * max(
            info.compress_size, 1
        ):
            raise EvalSetError(
                f"{_show(name)}: compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 "
                f"looks like a zip bomb (limit {limits.max_compression_ratio:.0f}:1)"
            )
        files.append((info, parts))
    if not files:
        raise EvalSetError(f"the zip has no images; expected one folder per label: {', '.join(card.labels)}")

    # strip one wrapping folder when every file sits under the same top folder that is not a label
    tops = {parts[0] for _, parts in files}
    strip = 1 if len(tops) == 1 and next(iter(tops)) not in card.labels else 0
    members: list[tuple[zipfile.ZipInfo, str]] = []
    for info, parts in files:
        rel = parts[strip:]
        if len(rel) != 2:
            raise EvalSetError(
                f"{_show(info.filename)}: expected <label>/<image>, with labels {', '.join(card.labels)}"
            )
        members.append((info, rel[0]))
    found = {label for _, label in members}
    unknown = sorted(found - set(card.labels))
    missing = [label for label in card.labels if label not in found]
    if unknown or missing:
        detail = []
        if unknown:
            detail.append("unknown label folder(s) " + ", ".join(_show(u) for u in unknown[:5]))
        if missing:
            detail.append("no images for " + ", ".join(missing))
        raise EvalSetError(
            f"labels must match the model's labels ({', '.join(card.labels)}): " + "; ".join(detail)
        )
    return members


def _check_path(name: str) -> None:
    if not name or "\x00" in name:
        raise EvalSetError("a member has an empty or invalid name")
    if "\\" in name:
        raise EvalSetError(f"{_show(name)}: backslashes are not allowed in member names")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise EvalSetError(f"{_show(name)}: absolute paths are not allowed")
    if any(part in ("..", ".") for part in name.split("/")):
        raise EvalSetError(f"{_show(name)}: '..' and '.' path components are not allowed")


def _ignored(parts: tuple[str, ...]) -> bool:
    """macOS resource forks and hidden files that archivers add behind the user's back."""
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def _show(name: str, limit: int = 80) -> str:
    """A member name safe to echo in an error message."""
    clean = name.encode("unicode_escape", "replace").decode("ascii", "replace")
    return repr(clean if len(clean) <= limit else clean[: limit - 1] + "…")
