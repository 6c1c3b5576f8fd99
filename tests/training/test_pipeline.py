"""End to end on a tiny real subset: prepare -> features -> train -> export -> LiteRT; Keras/TFLite parity.

Parity tolerance (stated): on >= 50 real face crops, the labels of Keras, float32 TFLite and int8 TFLite agree
on >= 99 %; |p_float32 - p_keras| <= 1e-4 everywhere; |p_int8 - p_float32| <= 0.10 on 95 % of the crops
and <= 0.03 on average (int8 output steps are 1/256, the rest is activation quantisation; a crop near the
decision boundary can move more, which the label-agreement bound covers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from masklite.card import DetectorSpec, load_card, verify_model_file
from masklite.classifier import Classifier, preprocess
from masklite.faces import crop_face, load_detector
from masklite.image import read_image_file
from training.features import VIEW_KINDS

PER_CLASS = 40
PARITY_CROPS = 60
F32_TOL = 1e-4
INT8_P95_TOL = 0.10
INT8_MEAN_TOL = 0.03


def tiny_sources(datasets_root: Path, target: Path, per_source: int = 4) -> Path:
    """A few real images per cross-source set, in the same layout (symlinks)."""
    import csv

    from training.sources import SOURCE_FOLDERS

    for source in ("macwinwin", "wider", "scenes"):
        src, dst = datasets_root / SOURCE_FOLDERS[source], target / SOURCE_FOLDERS[source]
        (dst / "annotations").mkdir(parents=True)
        (dst / "images").mkdir()
        for xml in sorted((src / "annotations").glob("*.xml"))[:per_source]:
            os.symlink(xml, dst / "annotations" / xml.name)
            image = next((src / "images").glob(f"{xml.stem}.*"))
            os.symlink(image, dst / "images" / image.name)
    src, dst = datasets_root / SOURCE_FOLDERS["rmfd"], target / SOURCE_FOLDERS["rmfd"]
    (dst / "with_mask").mkdir(parents=True)
    with open(src / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_folder: dict[str, list[dict]] = {}
    for r in rows:
        by_folder.setdefault(r["source_path"].split("/")[1], []).append(r)
    keep = [r for group in list(by_folder.values())[:3] for r in group[:2]]  # 3 folders: one per part
    with open(dst / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    for r in keep:
        os.symlink(src / r["file"], dst / r["file"])
    return target


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir, detector_path, weights_path, datasets_root, tf):
    """A 2x40-image ImageFolder plus a few images of every cross-source set (symlinks to the real data),
    prepared and featurised once."""
    from training.config import FeatureConfig, PrepareConfig
    from training.stages import stage_features, stage_prepare

    root = tmp_path_factory.mktemp("tiny")
    data = root / "data"
    rest: dict[str, list[Path]] = {}
    for label in ("with_mask", "without_mask"):
        files = sorted((data_dir / label).iterdir())
        rng = np.random.default_rng(0)
        order = rng.permutation(len(files))
        (data / label).mkdir(parents=True)
        for i in order[:PER_CLASS]:
            os.symlink(files[i], data / label / files[i].name)
        rest[label] = [files[i] for i in order[PER_CLASS : PER_CLASS + PARITY_CROPS]]
    work = root / "work"
    sources = tiny_sources(datasets_root, root / "datasets")
    stage_prepare(data, detector_path, work, PrepareConfig(), progress=False, datasets_root=sources)
    config = FeatureConfig(plain_views=1, train_views=1, mask_views=1)
    stage_features(data, work, config, str(weights_path), progress=False)
    return {"work": work, "data": data, "held_out": rest, "root": root}


@pytest.mark.timeout(900)  # a guard against hangs, not a speed check
def test_smoke_one_epoch_export_and_run(tiny, weights_path):
    from training.config import HeadConfig
    from training.stages import stage_export, stage_train

    info = stage_train(tiny["work"], HeadConfig(epochs=1), verbose=0)
    assert len(info["final"]) >= 2  # loss and accuracy (train + val)
    models = tiny["root"] / "models_smoke"
    card = stage_export(tiny["work"], models, str(weights_path))
    card = load_card(models)  # what was written validates against the schema
    assert card.labels == ["with_mask", "without_mask"]
    assert card.input.size == (128, 128) and card.crop_margin == 0.2
    assert sorted(p.name for p in models.iterdir()) == [
        "masklite_float32.tflite",
        "masklite_int8.tflite",
        "model_card.json",
    ]
    # every source reached training, and the card lists it with its licence
    from training.features import load_split

    train = load_split(tiny["work"] / "features", "train")
    assert set(train["source"]) == {"chandrikadeb7", "macwinwin", "wider", "rmfd"}
    assert {"plain", "degraded", "masked"} <= {VIEW_KINDS[k] for k in train["kind"]}
    listed = card.dataset["cross_source"]
    assert set(listed["faces"]) == {"macwinwin", "wider", "rmfd", "scenes"}
    assert all(listed["faces"][s].get("train") for s in ("macwinwin", "wider", "rmfd"))
    assert "research" in listed["licences"]["wider"]
    x = preprocess(
        [read_image_file(str(p)) for p in sorted((tiny["data"] / "with_mask").iterdir())[:4]], card.input
    )
    for precision in ("float32", "int8"):
        clf = Classifier(verify_model_file(card, models, precision))
        assert clf.precision == precision and clf.input_size == (128, 128)
        probs = clf.predict(x)
        assert probs.shape == (4, 2)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)


@pytest.mark.timeout(900)  # a guard against hangs, not a speed check
def test_parity_keras_float32_int8(tiny, detector_path, weights_path):
    import keras

    from training.artifacts import load_features_meta, representative_batch
    from training.config import HeadConfig
    from training.export import compose, to_tflite
    from training.features import build_backbone, input_spec, load_split
    from training.head import train_head

    work = tiny["work"]
    train, val = load_split(work / "features", "train"), load_split(work / "features", "val")
    head, _ = train_head(train["X"], train["y"], val["X"], val["y"], 2, HeadConfig(epochs=15))
    model = compose(build_backbone(128, 1.0, str(weights_path)), head, 128)
    spec = input_spec(128)
    # >= 50 real crops the tiny model never saw, cut by the service's detector and preprocessing
    detector = load_detector(DetectorSpec(), path=detector_path)
    crops = []
    for files in tiny["held_out"].values():
        for p in files:
            rgb = read_image_file(str(p))
            faces = detector.detect(rgb)
            crops.append(crop_face(rgb, faces[0].box, 0.2) if faces else rgb)
    assert len(crops) >= 50
    x = preprocess(crops, spec)
    p_keras = np.asarray(model.predict(x, verbose=0))
    f32_bytes, i8_bytes = to_tflite(model, 128, representative_batch(work, load_features_meta(work)))
    f32, i8 = Classifier(f32_bytes), Classifier(i8_bytes)
    assert (f32.precision, i8.precision) == ("float32", "int8")
    p_f32, p_i8 = f32.predict(x), i8.predict(x)
    agree = lambda a, b: float((a.argmax(1) == b.argmax(1)).mean())  # noqa: E731
    assert agree(p_f32, p_keras) >= 0.99
    assert agree(p_i8, p_f32) >= 0.99, f"int8 vs float32 label agreement {agree(p_i8, p_f32):.3f}"
    assert agree(p_i8, p_keras) >= 0.99
    assert np.abs(p_f32 - p_keras).max() <= F32_TOL
    diff = np.abs(p_i8 - p_f32).max(axis=1)
    spread = f"|dp| mean {diff.mean():.4f}, p95 {np.percentile(diff, 95):.4f}, max {diff.max():.4f}"
    assert np.percentile(diff, 95) <= INT8_P95_TOL, spread
    assert diff.mean() <= INT8_MEAN_TOL, spread
    del keras
