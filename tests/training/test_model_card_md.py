"""models/MODEL_CARD.md is rendered from model_card.json (training/model_card_md.py): the committed file must
be exactly what the card renders to today, so the two never disagree."""

from __future__ import annotations

import difflib
from pathlib import Path

from masklite.card import load_card
from training.model_card_md import write_model_card_md


def test_committed_model_card_md_is_the_rendered_card(models_dir: Path, tmp_path: Path) -> None:
    written = write_model_card_md(load_card(models_dir), tmp_path)
    assert written == tmp_path / "MODEL_CARD.md"
    committed = (models_dir / "MODEL_CARD.md").read_text().splitlines(keepends=True)
    rendered = written.read_text().splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(committed, rendered, "committed", "rendered", n=1))
    assert not diff, f"models/MODEL_CARD.md is stale: re-render it (training/model_card_md.py)\n{diff[:3000]}"


def test_model_card_md_shows_the_card_figures(models_dir: Path, tmp_path: Path) -> None:
    """The rendered tables carry the card's own numbers (a template that dropped a figure would not)."""
    card = load_card(models_dir)
    text = write_model_card_md(card, tmp_path).read_text()
    for precision in ("float32", "int8"):
        entry = card.models[precision]
        assert f"`{entry.file}`" in text
        assert f"{entry.bytes / 1e6:.2f} MB" in text
        assert f"{100 * entry.metrics['test']['accuracy']:.2f} %" in text
    assert card.detector.sha256 in text
