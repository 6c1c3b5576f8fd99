"""What a grid runs: the model's precision, the layers, the perturbations and their values, the images.

Shared by the CLI, the report and POST /v1/robustness (which returns these validation errors as 422).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from robustness.perturb import Kind

ORIGINAL_SCALARS: tuple[float, ...] = (0.25, 0.4, 0.6, 0.85, 0.96, 1, 1.1, 1.25, 1.5, 1.75, 2)
DEFAULT_NOISE_SIGMAS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
DEFAULT_BITFLIP_RATES: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
MAX_CELLS = 20_000  # layers x perturbations in one grid

# per list of values: the range each value must lie in, and the message when one does not
_VALUE_RANGES: dict[str, tuple[float, float, str]] = {
    "scalars": (-1e6, 1e6, "scalar {v} must be finite and within ±1e6"),
    "noise_sigmas": (0, 1000, "noise sigma {v} must be between 0 and 1000 (a multiple of the weight std)"),
    "bitflip_rates": (0, 0.5, "bit-flip rate {v} must be between 0 and 0.5"),
}


def _values(defaults: Sequence[float], description: str) -> Any:
    return Field(default_factory=lambda: list(defaults), min_length=1, max_length=64, description=description)


class GridSpec(BaseModel):
    """What to run. Shared by the CLI and POST /v1/robustness (which returns these errors as 422)."""

    # the docstring above and the field descriptions are published in /openapi.json

    model_config = ConfigDict(extra="forbid")

    precision: str = Field("int8", description="a model in the card: float32 or int8")
    layers: Literal["all"] | list[int | str] = Field("all", description='"all", or layer indices/names')
    kinds: list[Kind] = Field(default_factory=lambda: ["multiply", "add"], min_length=1, max_length=4)
    scalars: list[float] = _values(ORIGINAL_SCALARS, "values for multiply and add")
    noise_sigmas: list[float] = _values(
        DEFAULT_NOISE_SIGMAS, "Gaussian sigma as a multiple of the layer's weight std"
    )
    bitflip_rates: list[float] = _values(DEFAULT_BITFLIP_RATES, "probability that each stored bit flips")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    max_images: int | None = Field(None, ge=2, le=100_000, description="evaluate on a stratified subset")

    @field_validator("scalars", "noise_sigmas", "bitflip_rates")
    @classmethod
    def _finite_in_range(cls, values: list[float], info: ValidationInfo) -> list[float]:
        low, high, message = _VALUE_RANGES[info.field_name]
        for v in values:
            if not (math.isfinite(v) and low <= v <= high):
                raise ValueError(message.format(v=v))
        return list(dict.fromkeys(float(v) for v in values))

    @field_validator("kinds")
    @classmethod
    def _unique_kinds(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))

    def perturbations(self) -> list[tuple[str, float]]:
        """Every (kind, value) cell of one layer, in the order the grid reports them."""
        values = {
            "multiply": self.scalars,
            "add": self.scalars,
            "noise": self.noise_sigmas,
            "bitflip": self.bitflip_rates,
        }
        return [(kind, float(v)) for kind in self.kinds for v in values[kind]]
