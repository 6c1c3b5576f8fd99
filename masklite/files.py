"""Atomic writes, the one definition: a file or a folder appears whole, or not at all.

A file is written beside its target under a hidden temporary name that keeps the extension (so writers
that key on it, such as `np.savez`, write exactly there), then renamed over the target in one step. A
folder is filled in a hidden temporary folder beside its target and swapped in by `commit_dir`;
`staged_dir` does both and removes the temporary folder when the body fails.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the body succeeds, removed
    when it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_dir(target: Path) -> Path:
    """A fresh temporary folder beside `target`; `commit_dir` swaps it in."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def commit_dir(tmp: Path, target: Path) -> None:
    """Replace `target` (if any) by the folder `tmp`; the old one is moved aside first, then deleted."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Fill the yielded temporary folder; it replaces `target` when the body succeeds and is removed when
    it fails (`target` is then left as it was)."""
    tmp = atomic_dir(target)
    try:
        yield tmp
        commit_dir(tmp, Path(target))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
