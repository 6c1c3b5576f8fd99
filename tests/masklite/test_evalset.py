"""masklite.evalset: the one loader of labelled evaluation zips (the shipped set and client uploads), with its
checks against hostile zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masklite.card import ModelCard, load_card
from masklite.evalset import EvalSetError, EvalSetLimits, load_evalset, load_evalset_file
from tests.conftest import skip_or_fail


@pytest.fixture(scope="module")
def card(models_dir: Path) -> ModelCard:
    return load_card(models_dir)


def _jpeg(size: int = 32, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value // 2, 255 - value)).save(buf, "JPEG")
    return buf.getvalue()


def _zip(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_evalset_loads_a_valid_zip(card: ModelCard) -> None:
    members = {f"{label}/{i}.jpg": _jpeg(40 + i, 30 * i) for label in card.labels for i in range(3)}
    members["__MACOSX/._x"] = b"junk"
    members[f"{card.labels[0]}/.DS_Store"] = b"junk"
    ev = load_evalset(_zip(members), card)
    assert ev.images.shape == (6, *card.input.size, 3) and ev.images.dtype == np.uint8
    assert ev.counts() == dict.fromkeys(card.labels, 3)
    x = ev.inputs(card)
    assert x.dtype == np.float32 and x.min() >= -1.0 - 1e-6 and x.max() <= 1.0 + 1e-6
    # one wrapping folder (what "compress folder" makes) is accepted too
    wrapped = load_evalset(_zip({f"myset/{k}": v for k, v in members.items() if "MACOSX" not in k}), card)
    assert len(wrapped) == 6


def test_shipped_evalset_matches_the_card(models_dir: Path, card: ModelCard) -> None:
    path = models_dir / "evalset.zip"
    if not path.is_file():
        skip_or_fail("no shipped evalset.zip")
    ev = load_evalset_file(path, card)
    assert len(ev) >= 100 and all(n > 0 for n in ev.counts().values())
    # sampling before decoding keeps exactly the images that subsetting after decoding keeps
    early = load_evalset_file(path, card, max_images=30, seed=3)
    late = ev.subset(30, seed=3)
    assert early.names == late.names and np.array_equal(early.images, late.images)
    assert early.source == late.source and len(early) <= 30


@pytest.mark.parametrize(
    "case,message",
    [
        ("traversal", "'..'"),
        ("absolute", "absolute paths"),
        ("not_image", "not a usable image"),
        ("bomb", "zip bomb"),
        ("unknown_label", "unknown label folder"),
        ("missing_label", "no images for"),
        ("symlink", "symbolic links"),
        ("not_zip", "not a readable zip"),
        ("too_many", "entries; the limit"),
        ("too_deep", "expected <label>/<image>"),
        ("too_big_inflated", "inflates to more than"),
    ],
)
def test_evalset_rejects_bad_zips(card: ModelCard, case: str, message: str) -> None:
    a, b = card.labels[0], card.labels[1]
    good = {f"{a}/1.jpg": _jpeg(), f"{b}/1.jpg": _jpeg()}
    limits = EvalSetLimits()
    if case == "traversal":
        data = _zip({**good, f"{a}/../../etc/x.jpg": _jpeg()})
    elif case == "absolute":
        data = _zip({**good, "/tmp/x.jpg": _jpeg()})
    elif case == "not_image":
        data = _zip({**good, f"{a}/notes.txt": b"hello, not an image"})
    elif case == "bomb":
        data = _zip({**good, f"{a}/big.jpg": b"\0" * 5_000_000}, zipfile.ZIP_DEFLATED)
    elif case == "unknown_label":
        data = _zip({**good, "cats/1.jpg": _jpeg()})
    elif case == "missing_label":
        data = _zip({f"{a}/1.jpg": _jpeg()})
    elif case == "symlink":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in good.items():
                zf.writestr(k, v)
            info = zipfile.ZipInfo(f"{a}/link.jpg")
            info.external_attr = 0o120777 << 16  # S_IFLNK
            zf.writestr(info, "/etc/passwd")
        data = buf.getvalue()
    elif case == "not_zip":
        data = _jpeg()
    elif case == "too_many":
        data, limits = (
            _zip({**good, f"{a}/2.jpg": _jpeg(), f"{a}/3.jpg": _jpeg()}),
            EvalSetLimits(max_files=3),
        )
    elif case == "too_deep":
        data = _zip({**good, f"{a}/sub/1.jpg": _jpeg()})
    else:
        data, limits = _zip(good), EvalSetLimits(max_uncompressed_bytes=len(_jpeg()) + 10)
    with pytest.raises(EvalSetError, match=message):
        load_evalset(data, card, limits)
