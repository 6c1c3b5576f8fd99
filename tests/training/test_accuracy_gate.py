"""The accuracy gate: the shipped int8 model, through the service's own code, on the cross-source
validation faces in ../shared. A later change to decoding, the detector, the crop or preprocessing that
costs more than 1 point of balanced accuracy or of unmasked recall against the card fails here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masklite.card import load_card
from masklite.classifier import Classifier
from masklite.faces import crop_face
from masklite.image import read_image_file
from masklite.pipeline import Models, PredictOptions, decide_label, predict_frame
from tests.conftest import skip_or_fail
from training.crosssource import recall_block
from training.sources import SOURCE_FOLDERS, collect_faces

MAX_DROP = 0.01


def test_int8_on_cross_source_validation_holds_the_card(
    models_dir: Path, datasets_root: Path, detector_path: Path
) -> None:
    card = load_card(models_dir)
    figures = card.models["int8"].metrics.get("cross_source", {}).get("xval", {}).get("pooled")
    assert figures, "the card has no cross-source xval figures for int8 (run `python -m training build`)"
    faces = [f for f in collect_faces(datasets_root, detector_path, progress=False) if f.part == "xval"]
    assert {f.source for f in faces} == {"macwinwin", "wider", "rmfd"}
    classifier = Classifier(models_dir / card.models["int8"].file)
    y, pred, images = [], [], {}
    for f in faces:
        path = datasets_root / SOURCE_FOLDERS[f.source] / f.file
        if path not in images:
            images = {path: read_image_file(str(path))}  # faces of one scene are consecutive
        crop = crop_face(images[path], f.box, card.crop_margin)
        whole = PredictOptions(model="int8", detect_faces=False)
        face = predict_frame(crop, Models(card, classifier), whole).faces[0]
        # the size rule judges the face, not the crop around it: decide on the face box's size
        answer = decide_label(card, face.mask_probability, (0, 0, f.size, f.size), "int8")
        y.append(card.labels.index(f.label))
        pred.append(card.labels.index(answer) if answer in card.labels else -1)
    got = recall_block(np.array(y), np.array(pred), card.labels)
    assert got["n"] == figures["n"]
    card_unmasked = figures["per_class"]["without_mask"]["recall"]
    summary = (
        f"balanced {got['balanced_accuracy']:.4f} (card {figures['balanced_accuracy']:.4f}), "
        f"without_mask recall {got['per_class']['without_mask']['recall']:.4f} (card {card_unmasked:.4f})"
    )
    assert got["balanced_accuracy"] >= figures["balanced_accuracy"] - MAX_DROP, summary
    unmasked = got["per_class"]["without_mask"]["recall"]
    assert unmasked >= card_unmasked - MAX_DROP, summary
    print(summary)


def test_gate_would_catch_a_broken_preprocessing(
    models_dir: Path, datasets_root: Path, detector_path: Path
) -> None:
    """The gate can fail: the same faces with the colour channels swapped and no margin score lower."""
    card = load_card(models_dir)
    faces = [f for f in collect_faces(datasets_root, detector_path, progress=False) if f.part == "xval"]
    classifier = Classifier(models_dir / card.models["int8"].file)
    broken = card.model_copy(update={"input": card.input.model_copy(update={"color": "BGR", "offset": 0.0})})
    y, pred = [], []
    for f in faces[::3]:
        rgb = read_image_file(str(datasets_root / SOURCE_FOLDERS[f.source] / f.file))
        crop = crop_face(rgb, f.box, 0.0)
        face = predict_frame(crop, Models(broken, classifier), PredictOptions(detect_faces=False)).faces[0]
        y.append(card.labels.index(f.label))
        pred.append(
            card.labels.index(decide_label(card, face.mask_probability, (0, 0, f.size, f.size), "int8"))
        )
    got = recall_block(np.array(y), np.array(pred), card.labels)
    figures = card.models["int8"].metrics.get("cross_source", {}).get("xval", {}).get("pooled")
    if not figures:
        skip_or_fail("the card has no cross-source xval figures yet")
    assert got["balanced_accuracy"] < figures["balanced_accuracy"] - MAX_DROP
