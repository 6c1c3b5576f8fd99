"""robustness.spec: what a grid runs, validated as POST /v1/robustness validates it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from robustness.spec import DEFAULT_BITFLIP_RATES, DEFAULT_NOISE_SIGMAS, ORIGINAL_SCALARS, GridSpec


def test_defaults_are_the_original_grid() -> None:
    spec = GridSpec()
    assert spec.precision == "int8" and spec.layers == "all" and spec.kinds == ["multiply", "add"]
    assert spec.perturbations() == [("multiply", v) for v in ORIGINAL_SCALARS] + [
        ("add", v) for v in ORIGINAL_SCALARS
    ]
    assert spec.noise_sigmas == list(DEFAULT_NOISE_SIGMAS)
    assert spec.bitflip_rates == list(DEFAULT_BITFLIP_RATES)


def test_values_and_kinds_are_deduplicated_in_order() -> None:
    spec = GridSpec(kinds=["noise", "add", "noise"], scalars=[2, 1, 2], noise_sigmas=[0.5, 0.5])
    assert spec.kinds == ["noise", "add"]
    assert spec.perturbations() == [("noise", 0.5), ("add", 2.0), ("add", 1.0)]


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("scalars", float("inf"), "scalar inf must be finite and within ±1e6"),
        ("scalars", -2e6, "scalar -2000000.0 must be finite and within ±1e6"),
        ("noise_sigmas", -1, "noise sigma -1.0 must be between 0 and 1000"),
        ("noise_sigmas", float("nan"), "noise sigma nan must be between 0 and 1000"),
        ("bitflip_rates", 0.6, "bit-flip rate 0.6 must be between 0 and 0.5"),
    ],
)
def test_out_of_range_values(field: str, value: float, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GridSpec(**{field: [value]})


@pytest.mark.parametrize(
    "params",
    [{"kinds": ["scale"]}, {"kinds": []}, {"scalars": []}, {"surprise": 1}, {"max_images": 1}, {"seed": -1}],
)
def test_rejected_specs(params: dict) -> None:
    with pytest.raises(ValidationError):
        GridSpec(**params)


def test_edges_are_accepted() -> None:
    spec = GridSpec(scalars=[-1e6, 1e6], noise_sigmas=[0, 1000], bitflip_rates=[0, 0.5], layers=[0, "head"])
    assert spec.scalars == [-1e6, 1e6] and spec.layers == [0, "head"]
