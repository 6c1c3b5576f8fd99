"""The robustness kind's adapter: the request checked against the model and the evaluation set before
anything is queued (422 here, not minutes later in the job). The job itself is `robustness.evaluate:run_job`,
registered by name in service/jobkinds.py and imported by the job process only."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from masklite.card import ModelCard
from masklite.evalset import EvalSetError, EvalSetLimits, default_evalset_path, load_evalset
from robustness.errors import RobustnessError
from robustness.spec import MAX_CELLS, GridSpec
from robustness.surgery import TFLiteModel
from service.bodies import Part
from service.errors import ApiError
from service.settings import Settings

__all__ = ["GridSpec", "robustness_params"]


def evalset_limits(settings: Settings) -> EvalSetLimits:
    return EvalSetLimits(
        max_zip_bytes=settings.evalset_max_bytes,
        max_uncompressed_bytes=settings.evalset_max_uncompressed_bytes,
        max_files=settings.evalset_max_files,
        max_image_pixels=min(settings.max_pixels, EvalSetLimits.max_image_pixels),
    )


@lru_cache(maxsize=4)
def _layer_model(path: str) -> TFLiteModel:
    """Parsed once per file; only the layer list is used here (the job process re-reads and verifies)."""
    try:
        return TFLiteModel.from_file(path)
    except (OSError, RobustnessError) as exc:
        raise ApiError(
            503, "models_unavailable", f"model file unusable: {exc}", {"Retry-After": "5"}
        ) from exc


def robustness_params(
    spec: GridSpec, card: ModelCard, settings: Settings, parts: dict[str, list[Part]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Blocking (run it on a thread): the grid checked against the model and the evaluation set (the
    uploaded part `evalset`, or the shipped one) -> (the job's parameters, what GET /v1/jobs shows of
    them); 422 for anything the job would fail on."""
    upload = parts["evalset"][0].data if "evalset" in parts else None
    if spec.precision not in card.models:
        known = ", ".join(card.models)
        raise ApiError(422, "invalid_parameters", f"precision: {spec.precision!r} is not one of {known}")
    models_dir = Path(settings.models_dir)
    model = _layer_model(str(models_dir / card.models[spec.precision].file))
    try:
        layers = model.resolve_layers(spec.layers)
    except RobustnessError as exc:
        raise ApiError(422, "invalid_parameters", f"layers: {exc}") from exc
    cells = len(layers) * len(spec.perturbations())
    if cells > MAX_CELLS:
        raise ApiError(422, "invalid_parameters", f"{cells:,} cells requested; the limit is {MAX_CELLS:,}")
    limits = evalset_limits(settings)
    if upload is not None:
        if not upload:
            raise ApiError(422, "invalid_evalset", "evalset: the uploaded file is empty (0 bytes)")
        try:
            evalset = load_evalset(upload, card, limits, "upload")
        except EvalSetError as exc:
            raise ApiError(422, "invalid_evalset", f"evalset: {exc}") from exc
        evalset_info: dict[str, Any] = {
            "source": "upload",
            "bytes": len(upload),
            "sha256": hashlib.sha256(upload).hexdigest(),
            "images": len(evalset),
            "per_label": evalset.counts(),
        }
    else:
        path = default_evalset_path(models_dir)
        if not path.is_file():
            raise ApiError(
                422,
                "no_evalset",
                "this service has no default evaluation set (models/evalset.zip); upload one as the "
                "multipart part 'evalset' (a zip with one folder per label)",
            )
        evalset_info = {"source": path.name}
    params = {
        "spec": spec.model_dump(),
        "models_dir": str(models_dir),
        "evalset_zip": upload,
        "limits": limits.__dict__,
        "workers": settings.job_workers,
        "threads": 1,
    }
    public = {**spec.model_dump(), "layers_resolved": len(layers), "cells": cells, "evalset": evalset_info}
    return params, public
