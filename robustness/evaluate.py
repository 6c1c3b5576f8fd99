"""One grid from a spec: the card's model, an evaluation set (the shipped one, a file, or an upload), the
grid. The one call behind the CLI, the report and the service's robustness job (`run_job`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masklite.card import ModelCard, load_card, verify_model_file
from masklite.evalset import EvalSetLimits, default_evalset_path, load_evalset, load_evalset_file
from masklite.paths import DEFAULT_MODELS_DIR
from robustness.errors import RobustnessError
from robustness.grid import GridResult, Progress, run_grid
from robustness.outputs import write_outputs
from robustness.spec import GridSpec
from robustness.surgery import TFLiteModel


def load_model_for(card: ModelCard, models_dir: Path, precision: str) -> tuple[TFLiteModel, dict[str, Any]]:
    """The card's model of one precision, checked against its sha256, and what the result records of it."""
    if precision not in card.models:
        raise RobustnessError(f"unknown precision {precision!r}; the card has {', '.join(card.models)}")
    path = verify_model_file(card, models_dir, precision)
    entry = card.models[precision]
    model = TFLiteModel.from_file(path)
    return model, {"precision": precision, "file": entry.file, "sha256": entry.sha256, "bytes": entry.bytes}


def evaluate_spec(
    spec: GridSpec,
    models_dir: Path = DEFAULT_MODELS_DIR,
    evalset_zip: bytes | None = None,
    evalset_path: Path | None = None,
    limits: EvalSetLimits | None = None,
    workers: int = 1,
    threads: int = 1,
    progress: Progress | None = None,
    nice: int = 0,
) -> GridResult:
    """The grid of `spec` on an uploaded zip (`evalset_zip`), else on `evalset_path`, else on the shipped
    evaluation set in `models_dir`."""
    # the card as this model sees it: `input` is its own spec (micro has a smaller input)
    card = load_card(models_dir)
    card = card.model_copy(update={"input": card.model_input(spec.precision)})
    model, info = load_model_for(card, models_dir, spec.precision)
    if evalset_zip is not None:
        evalset = load_evalset(evalset_zip, card, limits, "upload", spec.max_images, spec.seed)
    else:
        path = evalset_path or default_evalset_path(models_dir)
        if not path.is_file():
            raise RobustnessError(f"no evaluation set at {path}: build the models or upload a zip")
        evalset = load_evalset_file(path, card, max_images=spec.max_images, seed=spec.seed)
    return run_grid(model, evalset, card, spec, workers, threads, progress, info, nice=nice)


def run_job(params: dict[str, Any], progress: Progress, out_dir: Path) -> dict[str, Any]:
    """The service's robustness job (runs in a job worker process; see service/jobs.py)."""
    spec = GridSpec.model_validate(params["spec"])
    limits = EvalSetLimits(**params["limits"]) if params.get("limits") else None
    result = evaluate_spec(
        spec,
        models_dir=Path(params["models_dir"]),
        evalset_zip=params.get("evalset_zip"),
        limits=limits,
        workers=int(params.get("workers", 1)),
        threads=int(params.get("threads", 1)),
        progress=progress,
    )
    write_outputs(result, out_dir, title=f"{spec.precision}")
    return result.to_dict()
