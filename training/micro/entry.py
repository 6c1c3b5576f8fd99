"""models.micro in the model card: its file and key, the budgets it must meet, and when a re-export of the
main model keeps it. No TensorFlow: the main export (training.stages) and the reports read this too."""

from __future__ import annotations

from pathlib import Path

from masklite.card import CARD_FILENAME, ModelCard, load_card
from masklite.paths import sha256_file

MICRO_FILE = "masklite_micro_int8.tflite"
MICRO_KEY = "micro"
MAX_FILE_BYTES = 500 * 1024  # flash
MAX_ARENA_BYTES = 384 * 1024  # RAM: the TFLM tensor arena
MAX_ACC_GAP = 0.02  # test accuracy at most this far below the main int8 model
# runs whose val accuracy is within this of the best count as tied; the smallest file among them wins
SELECT_TIE = 0.005


def carry_over_micro(models_dir: Path, card: ModelCard) -> None:
    """Keep models.micro when the main export rewrites the card (training.stages.stage_export calls this
    before it saves `card`): only while its file is there unchanged and the dataset is the one it was
    measured on; otherwise it is dropped, and `python -m training micro` rebuilds it."""
    old_path = models_dir / CARD_FILENAME
    if not old_path.is_file():
        return
    try:
        old = load_card(models_dir)
    except ValueError:
        return
    entry = old.models.get(MICRO_KEY)
    if entry is None:
        return
    path = models_dir / entry.file
    same_data = (entry.model_extra or {}).get("dataset_fingerprint") == card.dataset.get(
        "fingerprint", {}
    ).get("sha256")
    if path.is_file() and sha256_file(path) == entry.sha256 and same_data:
        card.models[MICRO_KEY] = entry
    else:
        print(
            f"note: models.{MICRO_KEY} dropped from the card (file changed or other dataset); "
            "rebuild it with `python -m training micro`"
        )
