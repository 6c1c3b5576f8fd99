"""masklite.files, the one definition of atomic writes that every training stage uses (fast, no data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masklite.files import atomic_path, staged_dir, write_bytes_atomic, write_text_atomic


def test_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    write_bytes_atomic(target, b"new")
    write_text_atomic(tmp_path / "card.json", "{}\n")
    assert target.read_bytes() == b"new" and (tmp_path / "card.json").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "model.tflite"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "views.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["views.npz"]


def test_temp_path_keeps_the_extension(tmp_path: Path) -> None:
    """np.savez appends .npz to any other name: the temp name must end in the target's extension."""
    target = tmp_path / "views_train.npz"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path and tmp.name.startswith(".")
        np.savez(tmp, y=np.arange(3))
    with np.load(target) as z:
        assert z["y"].tolist() == [0, 1, 2]


def test_staged_dir_swaps_in_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "work" / "train"
    with staged_dir(target) as tmp:
        (tmp / "head.keras").write_text("first")
    assert (target / "head.keras").read_text() == "first"

    with pytest.raises(KeyboardInterrupt), staged_dir(target) as tmp:
        (tmp / "head.keras").write_text("half")
        raise KeyboardInterrupt
    assert (target / "head.keras").read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["train"]

    with staged_dir(target) as tmp:
        (tmp / "other.json").write_text("second")
    assert [p.name for p in target.iterdir()] == ["other.json"]
    assert [p.name for p in target.parent.iterdir()] == ["train"]
