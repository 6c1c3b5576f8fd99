"""The CLI's options reach the configs, and what the card records of them (fast: no TensorFlow, no data)."""

from __future__ import annotations

import dataclasses

import pytest

from masklite.card import ModelCard
from training.__main__ import BUILD, CONFIG_OPTIONS, _config, build_parser
from training.config import HeadConfig


def _parse(argv: list[str]):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("cls", list(CONFIG_OPTIONS))
def test_every_config_option_is_an_option_and_a_field(cls) -> None:
    args = _parse(["build"])
    fields = {f.name for f in dataclasses.fields(cls)}
    for dest, field in CONFIG_OPTIONS[cls].items():
        assert hasattr(args, dest), dest
        assert field in fields, field
    assert _config(cls, args) == cls()  # the option defaults are the config defaults


def test_options_fill_their_fields() -> None:
    args = _parse(["train", "--depth", "2", "--lr", "0.01", "--seed", "3"])
    assert _config(HeadConfig, args) == HeadConfig(depth=2, learning_rate=0.01, seed=3)


def test_build_runs_every_stage_once_in_order() -> None:
    assert BUILD == ("prepare", "features", "train", "finetune", "export", "evaluate")


def test_head_config_has_no_engine_and_old_cards_still_load() -> None:
    """HeadConfig.engine was a never-read copy of FeatureConfig.engine: gone from the config and from
    what the card records; a card written before still loads (the training section is free-form)."""
    assert "engine" not in {f.name for f in dataclasses.fields(HeadConfig)}
    assert "engine" not in dataclasses.asdict(HeadConfig())
    old = {
        "name": "m",
        "version": "1",
        "labels": ["with_mask", "without_mask"],
        "input": {"size": [128, 128], "color": "RGB", "scale": 1 / 127.5, "offset": -1.0},
        "crop_margin": 0.2,
        "models": {},
        "training": {"head": dataclasses.asdict(HeadConfig()) | {"engine": "keras"}},
    }
    assert ModelCard.model_validate(old).training["head"]["engine"] == "keras"
