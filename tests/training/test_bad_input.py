"""Bad datasets fail early with a clear message and leave nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.__main__ import main
from training.dataset import DatasetError, load_images, scan_image_folder


def _jpeg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, "JPEG")


def _run_prepare(data: Path, work: Path, capsys) -> tuple[int, str]:
    # the detector path is never opened: the dataset is rejected before any detection
    rc = main(
        ["prepare", "--data-dir", str(data), "--work-dir", str(work), "--detector", __file__, "--quiet"]
    )
    return rc, capsys.readouterr().err


def _nothing_written(work: Path) -> None:
    assert not work.exists() or not any(work.iterdir()), f"left behind: {list(work.rglob('*'))}"


def test_missing_folder(tmp_path, capsys):
    rc, err = _run_prepare(tmp_path / "nope", tmp_path / "work", capsys)
    assert rc == 2 and "dataset folder not found" in err
    _nothing_written(tmp_path / "work")


def test_no_class_folders(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    rc, err = _run_prepare(tmp_path / "data", tmp_path / "work", capsys)
    assert rc == 2 and "no class sub-folders" in err
    _nothing_written(tmp_path / "work")


def test_empty_class_folder(tmp_path, capsys):
    _jpeg(tmp_path / "data" / "with_mask" / "a.jpg")
    (tmp_path / "data" / "without_mask").mkdir()
    rc, err = _run_prepare(tmp_path / "data", tmp_path / "work", capsys)
    assert rc == 2 and "no images" in err and "without_mask" in err
    _nothing_written(tmp_path / "work")


def test_one_class_only(tmp_path, capsys):
    _jpeg(tmp_path / "data" / "with_mask" / "a.jpg")
    rc, err = _run_prepare(tmp_path / "data", tmp_path / "work", capsys)
    assert rc == 2 and "only one class" in err
    _nothing_written(tmp_path / "work")


def test_unreadable_images_are_all_listed(tmp_path, capsys):
    _jpeg(tmp_path / "data" / "with_mask" / "a.jpg")
    _jpeg(tmp_path / "data" / "without_mask" / "b.jpg", seed=1)
    (tmp_path / "data" / "without_mask" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "data" / "with_mask" / "text.png").write_text("hello")
    rc, err = _run_prepare(tmp_path / "data", tmp_path / "work", capsys)
    assert rc == 2 and "2 unreadable image(s)" in err
    assert "without_mask/broken.jpg" in err and "with_mask/text.png" in err
    _nothing_written(tmp_path / "work")


def test_existing_outputs_survive_a_failed_run(tmp_path, capsys):
    """A failing re-run must not destroy the previous good prepare output."""
    work = tmp_path / "work"
    (work / "prepare").mkdir(parents=True)
    (work / "prepare" / "manifest.csv").write_text("previous\n")
    _jpeg(tmp_path / "data" / "with_mask" / "a.jpg")
    rc, _ = _run_prepare(tmp_path / "data", work, capsys)
    assert rc == 2
    assert (work / "prepare" / "manifest.csv").read_text() == "previous\n"
    assert sorted(p.name for p in work.iterdir()) == ["prepare"]


def test_library_errors_are_dataset_errors(tmp_path):
    _jpeg(tmp_path / "with_mask" / "a.jpg")
    _jpeg(tmp_path / "without_mask" / "b.jpg")
    labels, samples = scan_image_folder(tmp_path)
    assert labels == ["with_mask", "without_mask"]
    assert len(load_images(samples, progress=False)) == 2
    shutil.copy(__file__, tmp_path / "without_mask" / "fake.jpg")
    with pytest.raises(DatasetError, match="fake.jpg"):
        load_images(scan_image_folder(tmp_path)[1], progress=False)


def test_detector_failure_mid_prepare_writes_nothing(tmp_path, capsys, data_dir):
    """Real images but a detector file that is no model: prepare fails after decoding and cleans up."""
    for label in ("with_mask", "without_mask"):
        src = sorted((data_dir / label).iterdir())[:2]
        (tmp_path / "data" / label).mkdir(parents=True)
        for p in src:
            shutil.copy(p, tmp_path / "data" / label / p.name)
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx model")
    work = tmp_path / "work"
    # refused by name, as every CLI error is (exit 2, "error: ..."): the sha256 check of
    # masklite.faces.load_detector; never replaced by the shipped detector without a word
    code = main(
        [
            "prepare",
            "--data-dir",
            str(tmp_path / "data"),
            "--work-dir",
            str(work),
            "--detector",
            str(bogus),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "error: bogus.onnx: sha256" in err and "does not match" in err, err
    _nothing_written(work)
