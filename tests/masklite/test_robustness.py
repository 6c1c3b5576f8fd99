"""masklite.robustness and masklite.evalset on the shipped models and evaluation set (no mocks).

Kept short: a 40-image subset of the evaluation set and a handful of layers.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masklite.card import ModelCard, load_card
from masklite.evalset import EvalSet, EvalSetError, EvalSetLimits, load_evalset, load_evalset_file
from masklite.robustness import (
    INT8_MIN,
    GridSpec,
    ModelSplit,
    TFLiteModel,
    WeightedLayer,
    _Worker,
    load_model_for,
    perturb,
    predict_labels,
    requantize,
    run_grid,
    write_outputs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
N_IMAGES = 40


@pytest.fixture(scope="module")
def card(models_dir: Path) -> ModelCard:
    return load_card(models_dir)


@pytest.fixture(scope="module")
def evalset(models_dir: Path, card: ModelCard) -> EvalSet:
    path = models_dir / "evalset.zip"
    if not path.is_file():
        pytest.skip(f"no {path}: the training pipeline writes it (make build-models)")
    return load_evalset_file(path, card).subset(N_IMAGES, seed=0)


@pytest.fixture(scope="module", params=["int8", "float32"])
def model(request: pytest.FixtureRequest, models_dir: Path, card: ModelCard) -> TFLiteModel:
    if request.param not in card.models:
        pytest.skip(f"the card has no {request.param} model")
    return load_model_for(card, models_dir, request.param)[0]


@pytest.fixture(scope="module")
def int8_model(models_dir: Path, card: ModelCard) -> TFLiteModel:
    return load_model_for(card, models_dir, "int8")[0]


def _clean(model: TFLiteModel, evalset: EvalSet, card: ModelCard) -> np.ndarray:
    return predict_labels(model.data, evalset.inputs(card))


# ------------------------------------------------------------------ parsing and patching


def test_finds_every_weighted_layer(model: TFLiteModel) -> None:
    ops = {layer.op for layer in model.layers}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert len(model.layers) >= 50  # MobileNetV2 backbone (52) + the dense head
    assert model.layers[0].op == "CONV_2D" and model.layers[-1].op == "FULLY_CONNECTED"
    assert len({layer.name for layer in model.layers}) == len(model.layers)
    for layer in model.layers:
        assert layer.offset > 0 and layer.offset + layer.nbytes <= len(model.data)
        assert model.raw_weights(layer).shape == layer.shape
        if layer.dtype == "int8":
            assert layer.scales and all(s > 0 for s in layer.scales)


def test_float32_and_int8_have_the_same_layers(models_dir: Path, card: ModelCard) -> None:
    f32 = load_model_for(card, models_dir, "float32")[0]
    i8 = load_model_for(card, models_dir, "int8")[0]
    assert [(lyr.name, lyr.shape) for lyr in f32.layers] == [(lyr.name, lyr.shape) for lyr in i8.layers]


@pytest.mark.parametrize("kind,value", [("multiply", 1.0), ("add", 0.0), ("noise", 0.0), ("bitflip", 0.0)])
def test_identity_perturbation_reproduces_the_clean_model_exactly(
    model: TFLiteModel, evalset: EvalSet, card: ModelCard, kind: str, value: float
) -> None:
    clean = _clean(model, evalset, card)
    for layer in (model.layers[0], model.layers[len(model.layers) // 2], model.layers[-1]):
        pert = perturb(model, layer, kind, value)
        # int8: dequantize -> requantize with the same scales must give back every stored byte
        assert np.array_equal(pert.raw, model.raw_weights(layer)), layer.name
        assert pert.changed == 0 and pert.saturated in (None, 0)
        preds = predict_labels(model.patched(layer, pert.raw), evalset.inputs(card))
        assert np.array_equal(preds, clean), layer.name


def test_grid_identity_cells_match_clean_accuracy(
    model: TFLiteModel, evalset: EvalSet, card: ModelCard
) -> None:
    spec = GridSpec(layers=[0, -1], kinds=["multiply", "add"], scalars=[0.0, 1.0])
    result = run_grid(model, evalset, card, spec)
    by = {(c["layer"], c["kind"], c["value"]): c for c in result.cells}
    last = model.layers[-1].index
    for layer in (0, last):
        for kind, value in (("multiply", 1.0), ("add", 0.0)):
            cell = by[(layer, kind, value)]
            assert cell["accuracy"] == result.clean["accuracy"]
            assert cell["flip_rate"] == 0.0 and cell["changed_rate"] == 0.0
    assert len(result.cells) == 2 * 2 * 2


def test_multiplying_a_layer_by_zero_changes_predictions(
    model: TFLiteModel, evalset: EvalSet, card: ModelCard
) -> None:
    clean = _clean(model, evalset, card)
    for layer in (model.layers[0], model.layers[-2]):
        pert = perturb(model, layer, "multiply", 0.0)
        assert not np.any(pert.raw)
        preds = predict_labels(model.patched(layer, pert.raw), evalset.inputs(card))
        assert np.any(preds != clean), f"zeroing {layer.name} changed no prediction"


def test_suffix_split_gives_the_same_predictions_as_the_whole_model(
    int8_model: TFLiteModel, evalset: EvalSet, card: ModelCard
) -> None:
    clean = _clean(int8_model, evalset, card)
    args = (int8_model.data, evalset.images, card.input.model_dump(), evalset.labels, clean, 1)
    with_split, whole = _Worker(*args), _Worker(*args, cache_bytes=0)
    perts = [("multiply", 0.6), ("noise", 1.0), ("add", 0.25)]
    for index in (3, 30, len(int8_model.layers) - 3):
        a = with_split.run_layer(index, perts, seed=7)
        b = whole.run_layer(index, perts, seed=7)
        assert all(c["suffix_only"] for c in a) and not any(c["suffix_only"] for c in b)
        for x, y in zip(a, b, strict=True):
            assert (x["accuracy"], x["flip_rate"], x["changed_rate"]) == (
                y["accuracy"],
                y["flip_rate"],
                y["changed_rate"],
            )


def test_split_keeps_skip_connections_live(int8_model: TFLiteModel) -> None:
    # block_2_project feeds a residual ADD with block_1's output: both must cross the cut after it
    layer = next(lyr for lyr in int8_model.layers if lyr.name == "block_2_expand")
    split = ModelSplit(int8_model.data, int8_model.layers[layer.index + 1].op_index)
    assert len(split.live) == 2
    assert TFLiteModel(split.suffix).layers[0].name == int8_model.layers[layer.index + 1].name


# ------------------------------------------------------------------ int8 requantisation


def test_requantize_keeps_the_scale_and_counts_saturation() -> None:
    layer = WeightedLayer(
        index=0, op_index=0, op="CONV_2D", name="t", tensor_name="t", shape=(2, 3), dtype="int8",
        offset=0, nbytes=6, scales=(0.1, 0.2), zero_points=(0, 0), quantized_dimension=0,
    )  # fmt: skip
    q = np.array([[127, 64, -10], [100, -127, 0]], dtype=np.int8)
    w = (q.astype(np.float64) * np.array([[0.1], [0.2]])) * 2.0  # multiply by 2 in real units
    out, saturated = requantize(w, layer)
    assert out.tolist() == [[127, 127, -20], [127, -127, 0]]
    assert saturated == 4  # 254, 128, 200, -254 hit the clip
    assert out.min() >= INT8_MIN  # symmetric: -128 never produced
    # adding 1.0 (real units) = +10 steps on channel 0 (scale 0.1), +5 on channel 1 (scale 0.2)
    out, saturated = requantize(q.astype(np.float64) * np.array([[0.1], [0.2]]) + 1.0, layer)
    assert out.tolist() == [[127, 74, 0], [105, -122, 5]] and saturated == 1


def test_int8_perturbation_keeps_the_tensor_scales(int8_model: TFLiteModel) -> None:
    layer = int8_model.layers[5]
    raw = int8_model.raw_weights(layer)
    pert = perturb(int8_model, layer, "multiply", 2.0)
    expected = int(np.count_nonzero(np.abs(raw.astype(int)) * 2 > 127))
    assert pert.saturated == expected > 0
    patched = TFLiteModel(int8_model.patched(layer, pert.raw))
    assert patched.layers[5].scales == layer.scales
    assert np.array_equal(patched.raw_weights(patched.layers[5]), pert.raw)
    # every other layer is byte-identical
    for other in int8_model.layers:
        if other.index != 5:
            assert np.array_equal(
                patched.raw_weights(patched.layers[other.index]), int8_model.raw_weights(other)
            )


def test_noise_and_bitflips_are_seeded(int8_model: TFLiteModel) -> None:
    layer = int8_model.layers[10]
    a = perturb(int8_model, layer, "noise", 0.5, seed=1)
    b = perturb(int8_model, layer, "noise", 0.5, seed=1)
    c = perturb(int8_model, layer, "noise", 0.5, seed=2)
    assert np.array_equal(a.raw, b.raw) and not np.array_equal(a.raw, c.raw)
    flips = perturb(int8_model, layer, "bitflip", 0.01, seed=1)
    raw = int8_model.raw_weights(layer)
    bits = int(np.unpackbits(flips.raw.view(np.uint8) ^ raw.view(np.uint8)).sum())
    expected = raw.size * 8 * 0.01
    assert abs(bits - expected) < 5 * np.sqrt(expected)
    assert np.array_equal(flips.raw, perturb(int8_model, layer, "bitflip", 0.01, seed=1).raw)


# ------------------------------------------------------------------ outputs and CLI


def test_outputs_ranking_and_conclusions(
    int8_model: TFLiteModel, evalset: EvalSet, card: ModelCard, tmp_path: Path
) -> None:
    spec = GridSpec(layers=[0, 1, -2, -1], kinds=["add", "noise"], scalars=[0.25, 2.0], noise_sigmas=[1.0])
    seen: list[float] = []
    result = run_grid(int8_model, evalset, card, spec, progress=lambda f, p: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert set(result.ranking) == {"add", "noise", "overall"}
    assert [r["rank"] for r in result.ranking["add"]] == [1, 2, 3, 4]
    assert result.conclusions["checked"] is True
    assert result.conclusions["first_layer"]["name"] == int8_model.layers[0].name
    files = write_outputs(result, tmp_path, "test")
    assert {"grid.csv", "grid.json", "ranking.csv", "heatmap.png", "heatmap_add.png"} <= set(files)
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "grid.csv").read_text().splitlines()) == 1 + 4 * 3


def test_cli_run_with_a_process_pool(models_dir: Path, evalset: EvalSet, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "masklite.robustness_cli", "run", "--models-dir", str(models_dir),
           "--layers", "0,-1", "--kinds", "multiply", "--scalars", "0,1", "--max-images", "20",
           "--workers", "2", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 cells in" in proc.stdout and "CPU time" in proc.stdout
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "grid.csv").is_file()


def test_cli_rejects_unknown_layers(models_dir: Path) -> None:
    cmd = [sys.executable, "-m", "masklite.robustness_cli", "run", "--models-dir", str(models_dir),
           "--layers", "no_such_layer", "--max-images", "4", "--workers", "1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown layer 'no_such_layer'" in proc.stderr


# ------------------------------------------------------------------ evaluation-set zips


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
        pytest.skip("no shipped evalset.zip")
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
