"""The grid: every selected layer x every perturbation, each cell one re-evaluation of the whole evaluation
set, serially or in a spawn process pool, with progress after every cell.

Per cell: accuracy, flip rate (share of the clean model's correct predictions that change), the share of
all predictions that change, and (int8) saturation. Speed comes from re-running only what a perturbation
can change (`split.ModelSplit`), and from reusing the clean predictions when a perturbation leaves the
weights byte-identical.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from queue import Empty
from typing import Any

import numpy as np

from masklite.card import InputSpec, ModelCard
from masklite.classifier import Classifier, normalize
from masklite.evalset import EvalSet
from robustness.errors import RobustnessError
from robustness.perturb import Perturbed, perturb
from robustness.ranking import check_conclusions, sensitivity_ranking
from robustness.spec import MAX_CELLS, GridSpec
from robustness.split import ModelSplit
from robustness.surgery import TFLiteModel, WeightedLayer

Progress = Callable[[float, dict | None], None]  # (fraction done, partial result) after every cell

# activations cached per layer for the suffix-only shortcut; a layer needing more runs the whole model
DEFAULT_CACHE_BYTES = 768 * 2**20


@dataclass
class GridResult:
    model: dict[str, Any]
    evalset: dict[str, Any]
    clean: dict[str, Any]
    layers: list[dict[str, Any]]
    perturbations: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    ranking: dict[str, list[dict[str, Any]]]
    conclusions: dict[str, Any]
    timing: dict[str, Any]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ scoring


def labels_from_probs(probs: np.ndarray) -> np.ndarray:
    """Arg-max labels; a row with NaN/inf (a broken model) counts as wrong for every label (-1)."""
    bad = ~np.isfinite(probs).all(axis=1)
    labels = np.argmax(np.nan_to_num(probs, nan=-np.inf), axis=1)
    labels[bad] = -1
    return labels


def predict_labels(model_bytes: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Arg-max predictions of one model on a float32 batch."""
    return labels_from_probs(Classifier(model_bytes, num_threads=num_threads).predict(inputs))


def cell_metrics(
    preds: np.ndarray, labels: np.ndarray, clean: np.ndarray, perturbed: Perturbed, n_weights: int
) -> dict[str, Any]:
    """One cell's numbers: the perturbed model's predictions against the labels and the clean model's."""
    correct_clean = clean == labels
    changed = preds != clean
    accuracy = float(np.mean(preds == labels))
    return {
        "accuracy": accuracy,
        "accuracy_drop": float(np.mean(correct_clean)) - accuracy,
        "flip_rate": float(np.mean(changed[correct_clean])) if correct_clean.any() else 0.0,
        "changed_rate": float(np.mean(changed)),
        "saturated": perturbed.saturated,
        "saturated_share": None if perturbed.saturated is None else perturbed.saturated / n_weights,
        "weights_changed": perturbed.changed / n_weights,
    }


# ------------------------------------------------------------------ one layer's cells


class LayerWorker:
    """Evaluates every perturbation of one layer at a time; built once per process."""

    def __init__(
        self,
        data: bytes,
        inputs: np.ndarray,
        labels: np.ndarray,
        clean: np.ndarray,
        threads: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.model = TFLiteModel(data)
        self.inputs = inputs  # float32, normalised as the card says
        self.labels = labels
        self.clean = clean  # the unperturbed model's predictions
        self.threads = threads
        self.cache_bytes = cache_bytes

    def _suffix_runner(self, layer: WeightedLayer) -> Callable[[np.ndarray], np.ndarray] | None:
        """A predictor for patched weights that re-runs only the suffix, or None to run the full model."""
        if self.cache_bytes <= 0 or layer.op_index == 0:
            return None
        split = ModelSplit(self.model.data, layer.op_index)
        if split.trivial or split.activation_bytes(len(self.inputs)) > self.cache_bytes:
            return None
        suffix_model = TFLiteModel(split.suffix)
        target = suffix_model.layers[0]
        if target.shape != layer.shape or target.dtype != layer.dtype:
            return None
        acts = split.activations(self.inputs, self.threads)

        def predict(suffix: bytes) -> np.ndarray:
            return labels_from_probs(split.run_suffix(suffix, acts, self.threads))

        # the cut must not change a single prediction; if it did, fall back to the whole model
        if not np.array_equal(predict(split.suffix), self.clean):
            return None
        return lambda raw: predict(suffix_model.patched(target, raw))

    def run_layer(
        self,
        layer_index: int,
        perts: Sequence[tuple[str, float]],
        seed: int,
        on_cell: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        layer = self.model.layers[layer_index]
        original = self.model.raw_weights(layer)
        t0 = time.perf_counter()
        suffix = self._suffix_runner(layer)
        setup = time.perf_counter() - t0
        cells = []
        for kind, value in perts:
            t0 = time.perf_counter()
            pert = perturb(self.model, layer, kind, value, seed)
            if np.array_equal(pert.raw.view(np.uint8), original.view(np.uint8)):
                preds = self.clean  # byte-identical model: its predictions are the clean ones
            elif suffix is not None:
                preds = suffix(pert.raw)
            else:
                preds = predict_labels(self.model.patched(layer, pert.raw), self.inputs, self.threads)
            cell = {"layer": layer.index, "layer_name": layer.name, "kind": kind, "value": value}
            cell.update(cell_metrics(preds, self.labels, self.clean, pert, layer.size))
            cell["seconds"] = round(time.perf_counter() - t0 + setup / max(len(perts), 1), 4)
            cell["suffix_only"] = suffix is not None
            cells.append(cell)
            if on_cell is not None:
                on_cell(cell)
        return cells


# ------------------------------------------------------------------ the process pool (spawn: no fork of a
# process that may hold interpreter threads); each worker builds one LayerWorker and streams its cells back

_WORKER: LayerWorker | None = None
_QUEUE: Any = None


def _pool_init(queue: Any, nice: int, data: bytes, images: np.ndarray, spec: dict, *rest: Any) -> None:
    global _WORKER, _QUEUE
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    _QUEUE = queue
    # the uint8 images cross the process boundary (4x smaller than the float inputs), normalised here
    _WORKER = LayerWorker(data, normalize(images, InputSpec.model_validate(spec)), *rest)


def _pool_run(layer_index: int, perts: list[tuple[str, float]], seed: int) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _WORKER.run_layer(layer_index, perts, seed, on_cell=_QUEUE.put)


# ------------------------------------------------------------------ the grid


def run_grid(
    model: TFLiteModel,
    evalset: EvalSet,
    card: ModelCard,
    spec: GridSpec,
    workers: int = 1,
    threads: int = 1,
    progress: Progress | None = None,
    model_info: dict[str, Any] | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    nice: int = 0,
) -> GridResult:
    """Every selected layer x every perturbation. `workers` > 1 runs layers in a spawn process pool
    (each worker niced by `nice`); progress(fraction, partial) is called after every cell."""
    layers = model.resolve_layers(spec.layers)
    perts = spec.perturbations()
    total = len(layers) * len(perts)
    if total > MAX_CELLS:
        raise RobustnessError(f"{total:,} cells requested; the limit is {MAX_CELLS:,}")
    t_start = time.perf_counter()
    cpu_start = _cpu_seconds()
    inputs = evalset.inputs(card)
    clean = predict_labels(model.data, inputs, threads)
    clean_acc = float(np.mean(clean == evalset.labels))
    t_clean = time.perf_counter() - t_start
    done: list[dict[str, Any]] = []
    compact: list[list[Any]] = []
    columns = ["layer", "kind", "value", "accuracy", "flip_rate"]

    def report(cell: dict[str, Any]) -> None:
        done.append(cell)
        compact.append([cell[c] for c in columns])
        if progress is not None:
            partial = {"cells_done": len(done), "cells_total": total, "clean_accuracy": clean_acc}
            progress(len(done) / total, {**partial, "columns": columns, "cells": compact})

    if progress is not None:
        progress(0.0, {"cells_done": 0, "cells_total": total, "clean_accuracy": clean_acc, "cells": []})
    shared = (evalset.labels, clean, threads, cache_bytes)
    if workers <= 1:
        worker = LayerWorker(model.data, inputs, *shared)
        for layer in layers:
            worker.run_layer(layer.index, perts, spec.seed, on_cell=report)
    else:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        initargs = (queue, nice, model.data, evalset.images, card.input.model_dump(), *shared)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init, initargs=initargs) as pool:
            # early layers first: they cannot use the suffix shortcut and are the slowest
            futures = [pool.submit(_pool_run, layer.index, perts, spec.seed) for layer in layers]
            while len(done) < total:
                try:
                    report(queue.get(timeout=0.5))
                except Empty:
                    for f in futures:
                        if f.done():
                            f.result()  # re-raises a worker's error (or a dead pool) here
            for f in futures:
                f.result()
    order = {(k, v): i for i, (k, v) in enumerate(perts)}
    done.sort(key=lambda c: (c["layer"], order[(c["kind"], c["value"])]))
    elapsed = time.perf_counter() - t_start
    cpu = _cpu_seconds() - cpu_start
    ranking = sensitivity_ranking(done, [layer.describe() for layer in layers])
    return GridResult(
        model=model_info or {"bytes": len(model.data)},
        evalset={"source": evalset.source, "images": len(evalset), "per_label": evalset.counts()},
        clean={"accuracy": clean_acc, "correct": int(np.sum(clean == evalset.labels))},
        layers=[layer.describe() for layer in layers],
        perturbations=[{"kind": k, "value": v} for k, v in perts],
        cells=done,
        ranking=ranking,
        conclusions=check_conclusions(ranking, model.layers),
        timing={
            "seconds": round(elapsed, 2),
            "clean_seconds": round(t_clean, 2),
            "cells": total,
            "seconds_per_cell": round(elapsed / max(total, 1), 3),
            # CPU time of this process and its (finished) pool workers: on a shared machine, cpu / workers
            # is what the grid costs on that many idle cores
            "cpu_seconds": round(cpu, 1),
            "suffix_only_cells": sum(1 for c in done if c.get("suffix_only")),
            "workers": workers,
            "threads": threads,
            "cpu_count": os.cpu_count(),
        },
        seed=spec.seed,
    )


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
