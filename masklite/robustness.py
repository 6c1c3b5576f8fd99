"""Per-layer weight robustness of a .tflite model (float32 or int8), without TensorFlow.

The model is parsed with the flatbuffer reader bundled with ai-edge-litert; every CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED op's weight tensor is located in the model bytes, and a perturbed
model is a copy of those bytes with that one tensor's data rewritten in place (same size, so every other
offset in the flatbuffer stays valid). The copy runs in `masklite.classifier.Classifier`.

Perturbations (one layer at a time, all others untouched):
    multiply  w * s                      add      w + s
    noise     w + N(0, (s * std(w))^2)   bitflip  each stored bit flips with probability s
int8 weights are dequantized with the tensor's own (per-channel) scales and zero points, perturbed, and
requantized with the SAME scales, clipped to [-127, 127]; the weights that hit the clip are counted.
Bit flips act on the stored bytes (int8 or float32), as a memory fault would.

Per cell: accuracy, flip rate (share of the clean model's correct predictions that change), the share of
all predictions that change, and (int8) saturation.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Literal

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from masklite import charts_available
from masklite.card import InputSpec, ModelCard, load_card
from masklite.classifier import Classifier, normalize, quantize
from masklite.classifier import dequantize as dequantize_output
from masklite.evalset import EvalSet, EvalSetLimits, default_evalset_path, load_evalset, load_evalset_file
from masklite.paths import DEFAULT_MODELS_DIR

ORIGINAL_SCALARS: tuple[float, ...] = (0.25, 0.4, 0.6, 0.85, 0.96, 1, 1.1, 1.25, 1.5, 1.75, 2)
DEFAULT_NOISE_SIGMAS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
DEFAULT_BITFLIP_RATES: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
Kind = Literal["multiply", "add", "noise", "bitflip"]
KINDS: tuple[str, ...] = ("multiply", "add", "noise", "bitflip")
INT8_MIN, INT8_MAX = -127, 127  # TFLite int8 weights are symmetric: -128 is never produced
MAX_CELLS = 20_000

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int) and k.isupper()}
_TYPES = {schema.TensorType.FLOAT32: np.dtype(np.float32), schema.TensorType.INT8: np.dtype(np.int8)}
_SHORT_OP = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "dense"}

Progress = Callable[[float, dict | None], None]


class RobustnessError(ValueError):
    """Bad parameters or an unusable model; the message is meant for the user."""


# ------------------------------------------------------------------ the model and its weighted layers


@dataclass(frozen=True)
class WeightedLayer:
    index: int  # position among the weighted layers, 0 = first
    op_index: int  # position in the subgraph's operator list
    op: str
    name: str
    tensor_name: str
    shape: tuple[int, ...]
    dtype: str  # "float32" | "int8"
    offset: int  # byte offset of the weight data inside the model bytes
    nbytes: int
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "op": self.op,
            "shape": list(self.shape),
            "weights": self.size,
            "dtype": self.dtype,
            "per_channel": len(self.scales) > 1,
        }


class TFLiteModel:
    """A .tflite file in memory, with its weighted layers located. Cheap to build (no interpreter)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.layers, self.skipped = _find_weighted_layers(self.data)
        if not self.layers:
            raise RobustnessError("the model has no CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED weights")

    @classmethod
    def from_file(cls, path: Path | str) -> TFLiteModel:
        return cls(Path(path).read_bytes())

    def raw_weights(self, layer: WeightedLayer) -> np.ndarray:
        """The stored weights (int8 or float32), a copy, in the tensor's shape."""
        buf = np.frombuffer(self.data, dtype=np.uint8, count=layer.nbytes, offset=layer.offset)
        return buf.view(np.dtype(layer.dtype)).reshape(layer.shape).copy()

    def float_weights(self, layer: WeightedLayer) -> np.ndarray:
        raw = self.raw_weights(layer)
        if layer.dtype == "float32":
            return raw.astype(np.float64)
        return dequantize(raw, layer)

    def patched(self, layer: WeightedLayer, raw: np.ndarray) -> bytes:
        """The model bytes with `layer`'s weights replaced by `raw` (same dtype and shape)."""
        new = np.ascontiguousarray(raw, dtype=np.dtype(layer.dtype))
        if new.shape != layer.shape:
            raise ValueError(f"{layer.name}: shape {new.shape} != {layer.shape}")
        out = bytearray(self.data)
        out[layer.offset : layer.offset + layer.nbytes] = new.tobytes()
        return bytes(out)

    def resolve_layers(self, selection: str | Sequence[int | str] | None) -> list[WeightedLayer]:
        """'all' / None, or a list of indices (negative allowed) and names."""
        if selection is None or selection == "all":
            return list(self.layers)
        if isinstance(selection, str):
            selection = [selection]
        by_name = {layer.name: layer for layer in self.layers}
        chosen: list[WeightedLayer] = []
        for item in selection:
            if isinstance(item, int) or (isinstance(item, str) and item.lstrip("-").isdigit()):
                idx = int(item)
                if not -len(self.layers) <= idx < len(self.layers):
                    raise RobustnessError(
                        f"layer index {idx} is out of range: the model has {len(self.layers)} weighted layers"
                    )
                layer = self.layers[idx]
            elif item in by_name:
                layer = by_name[item]
            else:
                sample = ", ".join(list(by_name)[:4])
                raise RobustnessError(f"unknown layer {item!r}; use indices or names such as {sample}, …")
            if layer not in chosen:
                chosen.append(layer)
        if not chosen:
            raise RobustnessError("no layers selected")
        return sorted(chosen, key=lambda lyr: lyr.index)


def _find_weighted_layers(data: bytes) -> tuple[list[WeightedLayer], list[str]]:
    try:
        model = schema.Model.GetRootAs(data, 0)
        subgraph = model.Subgraphs(0)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a tflite flatbuffer"
        raise RobustnessError(f"not a readable .tflite model: {exc}") from exc
    found: list[tuple[int, str, tuple, str]] = []
    skipped: list[str] = []
    for op_index in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(op_index)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
        if name not in WEIGHTED_OPS or op.InputsLength() < 2:
            continue
        tensor = subgraph.Tensors(op.Inputs(1))
        tname = tensor.Name().decode(errors="replace")
        buf = model.Buffers(tensor.Buffer())
        if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
            offset, nbytes = buf.Offset(), buf.Size()
        else:
            slot = buf._tab.Offset(4)  # the `data` vector
            if not slot:
                skipped.append(f"op {op_index} {name}: weights are not constant data")
                continue
            offset, nbytes = buf._tab.Vector(slot), buf._tab.VectorLen(slot)
        dtype = _TYPES.get(tensor.Type())
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
        if dtype is None or nbytes != int(np.prod(shape)) * dtype.itemsize:
            skipped.append(f"op {op_index} {name}: weight type {tensor.Type()} is not float32/int8")
            continue
        scales: tuple[float, ...] = ()
        zps: tuple[int, ...] = ()
        qdim = 0
        if dtype == np.int8:
            quant = tensor.Quantization()
            if quant is None or quant.ScaleLength() == 0:
                skipped.append(f"op {op_index} {name}: int8 weights without quantization parameters")
                continue
            scales = tuple(float(s) for s in quant.ScaleAsNumpy())
            zps = tuple(int(z) for z in quant.ZeroPointAsNumpy()) if quant.ZeroPointLength() else ()
            zps = zps or (0,) * len(scales)
            qdim = int(quant.QuantizedDimension())
        found.append((op_index, name, (shape, str(dtype), offset, nbytes, scales, zps, qdim), tname))
    names = _short_names([(name, tname) for _, name, _, tname in found])
    layers = [
        WeightedLayer(i, op_index, name, names[i], tname, *info)
        for i, (op_index, name, info, tname) in enumerate(found)
    ]
    return layers, skipped


def _short_names(ops: list[tuple[str, str]]) -> list[str]:
    """Readable, unique layer names from the converter's long tensor names ('block_3_expand', 'dense_1')."""
    parts: list[str] = []
    for op, tname in ops:
        pieces = tname.split(";")
        pick = next(
            (p for p in pieces if p.rsplit("/", 1)[-1] in ("convolution", "depthwise", "MatMul", "Conv2D")),
            None,
        )
        path = (pick or pieces[0]).split("/")
        # "model/<layer>/convolution" -> <layer>; otherwise the component after the model name
        core = path[-2] if pick and len(path) >= 2 else path[1] if len(path) > 2 else path[-1]
        parts.append(core or _SHORT_OP.get(op, op.lower()))
    # Keras 3 exports each layer as "<name>_1": drop that suffix when every layer has it
    if parts and all(p.endswith("_1") for p in parts):
        parts = [p[:-2] for p in parts]
    seen: dict[str, int] = {}
    out = []
    for p in parts:
        seen[p] = seen.get(p, 0) + 1
        out.append(p if seen[p] == 1 else f"{p}#{seen[p]}")
    return out


# ------------------------------------------------------------------ perturbations


def _channel_view(values: np.ndarray, layer: WeightedLayer) -> np.ndarray:
    """Per-channel scales broadcast against the weight tensor."""
    scales = np.asarray(layer.scales, dtype=np.float64)
    if scales.size == 1:
        return scales.reshape(())
    shape = [1] * values.ndim
    shape[layer.quantized_dimension] = scales.size
    return scales.reshape(shape)


def _zero_view(values: np.ndarray, layer: WeightedLayer) -> np.ndarray:
    zps = np.asarray(layer.zero_points, dtype=np.float64)
    if zps.size == 1:
        return zps.reshape(())
    shape = [1] * values.ndim
    shape[layer.quantized_dimension] = zps.size
    return zps.reshape(shape)


def dequantize(raw: np.ndarray, layer: WeightedLayer) -> np.ndarray:
    return (raw.astype(np.float64) - _zero_view(raw, layer)) * _channel_view(raw, layer)


def requantize(values: np.ndarray, layer: WeightedLayer) -> tuple[np.ndarray, int]:
    """Float weights -> int8 with the layer's own scales, clipped to [-127, 127]; returns (q, saturated)."""
    q = np.round(values / _channel_view(values, layer) + _zero_view(values, layer))
    saturated = int(np.count_nonzero((q < INT8_MIN) | (q > INT8_MAX) | ~np.isfinite(q)))
    q = np.nan_to_num(q, nan=0.0, posinf=INT8_MAX, neginf=INT8_MIN)
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8), saturated


@dataclass
class Perturbed:
    raw: np.ndarray
    saturated: int | None  # int8 only; None where it does not apply
    changed: int  # stored weights whose value changed


def cell_rng(seed: int, layer_index: int, kind: str, value: float) -> np.random.Generator:
    """Independent of the order cells run in, so parallel and serial runs give the same noise."""
    bits = int(np.float64(value).view(np.uint64))
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, layer_index, KINDS.index(kind), bits])


def perturb(model: TFLiteModel, layer: WeightedLayer, kind: str, value: float, seed: int = 0) -> Perturbed:
    raw = model.raw_weights(layer)
    rng = cell_rng(seed, layer.index, kind, value)
    if kind == "bitflip":
        flipped = _flip_bits(raw, value, rng)
        return Perturbed(flipped, None, int(np.count_nonzero(flipped.view(np.uint8) != raw.view(np.uint8))))
    w = raw.astype(np.float64) if layer.dtype == "float32" else dequantize(raw, layer)
    if kind == "multiply":
        new = w * value
    elif kind == "add":
        new = w + value
    elif kind == "noise":
        std = float(np.std(w))
        new = w + rng.normal(0.0, value * std, size=w.shape) if value > 0 else w
    else:
        raise RobustnessError(f"unknown perturbation kind {kind!r}; use one of {', '.join(KINDS)}")
    if layer.dtype == "float32":
        out = new.astype(np.float32)
        return Perturbed(out, None, int(np.count_nonzero(out != raw)))
    q, saturated = requantize(new, layer)
    return Perturbed(q, saturated, int(np.count_nonzero(q != raw)))


def _flip_bits(raw: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Flip each stored bit independently with probability `rate` (little-endian bytes, as in the file)."""
    data = raw.copy()
    octets = data.view(np.uint8).reshape(-1)
    nbits = octets.size * 8
    count = int(rng.binomial(nbits, min(max(rate, 0.0), 1.0)))
    if count:
        pos = rng.choice(nbits, size=count, replace=False)
        np.bitwise_xor.at(octets, pos // 8, (1 << (pos % 8)).astype(np.uint8))
    return data


# ------------------------------------------------------------------ evaluation


def labels_from_probs(probs: np.ndarray) -> np.ndarray:
    """Arg-max labels; a row with NaN/inf (a broken model) counts as wrong for every label (-1)."""
    bad = ~np.isfinite(probs).all(axis=1)
    labels = np.argmax(np.nan_to_num(probs, nan=-np.inf), axis=1)
    labels[bad] = -1
    return labels


def predict_labels(model_bytes: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Arg-max predictions of one model on a float32 batch."""
    return labels_from_probs(Classifier(model_bytes, num_threads=num_threads).predict(inputs))


class ModelSplit:
    """The model cut just before one op: a prefix that computes every tensor still needed after the cut
    (the op's input plus any skip connections), and a suffix that starts from those tensors.

    Perturbing layer k only changes what comes after it, so the prefix runs once per layer and each
    perturbation only re-runs the suffix. Both halves are ordinary .tflite flatbuffers rebuilt with the
    schema's object API; the suffix keeps the weights byte-identical, so the same patching applies.
    """

    def __init__(self, data: bytes, op_index: int):
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        sub = model.subgraphs[0]
        constant = {
            i
            for i, t in enumerate(sub.tensors)
            if t.buffer > 0 and model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
        }
        graph_inputs = [int(i) for i in sub.inputs]
        produced = set(graph_inputs)
        for op in sub.operators[:op_index]:
            produced |= {int(i) for i in op.outputs}
        needed = {int(i) for op in sub.operators[op_index:] for i in op.inputs if i >= 0}
        self.live = sorted((needed & produced) - constant)
        self.trivial = op_index == 0 or set(self.live) <= set(graph_inputs)
        ops = sub.operators
        model.signatureDefs = None  # signatures would name tensors the halves no longer have
        sub.operators, sub.inputs = ops[op_index:], np.array(self.live, dtype=np.int32)
        self.suffix = _pack(model, len(data))
        sub.operators, sub.inputs = ops[:op_index], np.array(graph_inputs, dtype=np.int32)
        sub.outputs = np.array(self.live, dtype=np.int32)
        self.prefix = _pack(model, len(data))

    def activations(self, inputs: np.ndarray, num_threads: int = 1) -> dict[int, np.ndarray]:
        """The live tensors for every input image, keyed by tensor index, in the model's own dtype."""
        interp = Interpreter(model_content=self.prefix, num_threads=num_threads)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        outs = interp.get_output_details()
        acts = {d["index"]: np.empty((len(inputs), *d["shape"][1:]), dtype=d["dtype"]) for d in outs}
        for n, x in enumerate(inputs):
            interp.set_tensor(inp["index"], quantize(x[None], inp))
            interp.invoke()
            for d in outs:
                acts[d["index"]][n] = interp.get_tensor(d["index"])[0]
        return acts

    def activation_bytes(self, n_images: int) -> int:
        interp = Interpreter(model_content=self.prefix)
        return n_images * sum(int(np.prod(d["shape"][1:])) * np.dtype(d["dtype"]).itemsize
                              for d in interp.get_output_details())  # fmt: skip

    @staticmethod
    def run_suffix(suffix: bytes, acts: dict[int, np.ndarray], num_threads: int = 1) -> np.ndarray:
        interp = Interpreter(model_content=suffix, num_threads=num_threads)
        interp.allocate_tensors()
        ins = interp.get_input_details()
        out = interp.get_output_details()[0]
        n = len(next(iter(acts.values())))
        probs = np.empty((n, int(out["shape"][-1])), dtype=np.float32)
        for i in range(n):
            for d in ins:
                interp.set_tensor(d["index"], acts[d["index"]][i : i + 1])
            interp.invoke()
            probs[i] = dequantize_output(interp.get_tensor(out["index"])[0], out)
        return labels_from_probs(probs)


def _pack(model: Any, size_hint: int) -> bytes:
    builder = flatbuffers.Builder(size_hint + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _cell_metrics(
    preds: np.ndarray, labels: np.ndarray, clean: np.ndarray, perturbed: Perturbed, n_weights: int
) -> dict[str, Any]:
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


DEFAULT_CACHE_BYTES = 768 * 2**20


class _Worker:
    """Evaluates every perturbation of one layer at a time; built once per process."""

    def __init__(
        self,
        data: bytes,
        images: np.ndarray,
        spec: dict,
        labels: np.ndarray,
        clean: np.ndarray,
        threads: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.model = TFLiteModel(data)
        self.inputs = normalize(images, InputSpec.model_validate(spec))
        self.labels = labels
        self.clean = clean
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
        # the cut must not change a single prediction; if it did, fall back to the whole model
        if not np.array_equal(split.run_suffix(split.suffix, acts, self.threads), self.clean):
            return None
        return lambda raw: split.run_suffix(suffix_model.patched(target, raw), acts, self.threads)

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
            cell.update(_cell_metrics(preds, self.labels, self.clean, pert, layer.size))
            cell["seconds"] = round(time.perf_counter() - t0 + setup / max(len(perts), 1), 4)
            cell["suffix_only"] = suffix is not None
            cells.append(cell)
            if on_cell is not None:
                on_cell(cell)
        return cells


_WORKER: _Worker | None = None
_QUEUE: Any = None


def _pool_init(queue: Any, nice: int, *args: Any) -> None:
    global _WORKER, _QUEUE
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    _QUEUE = queue
    _WORKER = _Worker(*args)


def _pool_run(layer_index: int, perts: list[tuple[str, float]], seed: int) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _WORKER.run_layer(layer_index, perts, seed, on_cell=_QUEUE.put)


# ------------------------------------------------------------------ the grid


class GridSpec(BaseModel):
    """What to run. Shared by the CLI and POST /v1/robustness (which returns these errors as 422)."""

    model_config = ConfigDict(extra="forbid")

    precision: str = Field("int8", description="a model in the card: float32 or int8")
    layers: Literal["all"] | list[int | str] = Field("all", description='"all", or layer indices/names')
    kinds: list[Kind] = Field(default_factory=lambda: ["multiply", "add"], min_length=1, max_length=4)
    scalars: list[float] = Field(
        default_factory=lambda: list(ORIGINAL_SCALARS),
        min_length=1,
        max_length=64,
        description="values for multiply and add",
    )
    noise_sigmas: list[float] = Field(
        default_factory=lambda: list(DEFAULT_NOISE_SIGMAS),
        min_length=1,
        max_length=64,
        description="Gaussian sigma as a multiple of the layer's weight std",
    )
    bitflip_rates: list[float] = Field(
        default_factory=lambda: list(DEFAULT_BITFLIP_RATES),
        min_length=1,
        max_length=64,
        description="probability that each stored bit flips",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1)
    max_images: int | None = Field(None, ge=2, le=100_000, description="evaluate on a stratified subset")

    @field_validator("scalars")
    @classmethod
    def _finite_scalars(cls, values: list[float]) -> list[float]:
        for v in values:
            if not math.isfinite(v) or abs(v) > 1e6:
                raise ValueError(f"scalar {v} must be finite and within ±1e6")
        return _unique(values)

    @field_validator("noise_sigmas")
    @classmethod
    def _sigmas(cls, values: list[float]) -> list[float]:
        for v in values:
            if not math.isfinite(v) or not 0 <= v <= 1000:
                raise ValueError(f"noise sigma {v} must be between 0 and 1000 (a multiple of the weight std)")
        return _unique(values)

    @field_validator("bitflip_rates")
    @classmethod
    def _rates(cls, values: list[float]) -> list[float]:
        for v in values:
            if not math.isfinite(v) or not 0 <= v <= 0.5:
                raise ValueError(f"bit-flip rate {v} must be between 0 and 0.5")
        return _unique(values)

    @field_validator("kinds")
    @classmethod
    def _unique_kinds(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))

    def perturbations(self) -> list[tuple[str, float]]:
        values = {
            "multiply": self.scalars,
            "add": self.scalars,
            "noise": self.noise_sigmas,
            "bitflip": self.bitflip_rates,
        }
        return [(kind, float(v)) for kind in self.kinds for v in values[kind]]


def _unique(values: list[float]) -> list[float]:
    return list(dict.fromkeys(float(v) for v in values))


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
    worker_args = (
        model.data,
        evalset.images,
        card.input.model_dump(),
        evalset.labels,
        clean,
        threads,
        cache_bytes,
    )
    if workers <= 1:
        worker = _Worker(*worker_args)
        worker.inputs = inputs
        for layer in layers:
            worker.run_layer(layer.index, perts, spec.seed, on_cell=report)
    else:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_pool_init, initargs=(queue, nice, *worker_args)
        ) as pool:
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
        conclusions=check_conclusions(ranking, model.layers, layers),
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


def sensitivity_ranking(
    cells: Iterable[dict[str, Any]], layers: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Per kind (and "overall"): layers by mean accuracy drop over that kind's values, then by flip rate."""
    cells = list(cells)
    clean_by_layer: dict[int, str] = {lyr["index"]: lyr["name"] for lyr in layers}
    kinds = list(dict.fromkeys(c["kind"] for c in cells))
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in [*kinds, "overall"]:
        rows = []
        for index, name in clean_by_layer.items():
            mine = [c for c in cells if c["layer"] == index and (kind == "overall" or c["kind"] == kind)]
            if not mine:
                continue
            rows.append(
                {
                    "layer": index,
                    "name": name,
                    "mean_accuracy_drop": float(np.mean([c["accuracy_drop"] for c in mine])),
                    "mean_flip_rate": float(np.mean([c["flip_rate"] for c in mine])),
                    "worst_accuracy": float(min(c["accuracy"] for c in mine)),
                }
            )
        rows.sort(
            key=lambda r: (-round(r["mean_accuracy_drop"], 9), -round(r["mean_flip_rate"], 9), r["layer"]),
        )
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        out[kind] = rows
    return out


def check_conclusions(
    ranking: dict[str, list[dict[str, Any]]], all_layers: list[WeightedLayer], chosen: list[WeightedLayer]
) -> dict[str, Any]:
    """The original study: the first layer is the most sensitive to addition, the last the least."""
    rows = ranking.get("add")
    first, last = all_layers[0].index, all_layers[-1].index
    if not rows or first not in {r["layer"] for r in rows} or last not in {r["layer"] for r in rows}:
        return {"checked": False, "reason": "needs the 'add' kind on both the first and the last layer"}
    by_layer = {r["layer"]: r for r in rows}
    drops = [r["mean_accuracy_drop"] for r in rows]
    flips = [r["mean_flip_rate"] for r in rows]
    eps = 1e-9
    f, la = by_layer[first], by_layer[last]
    top = [r for r in rows if r["mean_accuracy_drop"] >= max(drops) - eps]
    bottom = [r for r in rows if r["mean_accuracy_drop"] <= min(drops) + eps]
    return {
        "checked": True,
        "layers": len(rows),
        "first_layer": {k: f[k] for k in ("name", "rank", "mean_accuracy_drop", "mean_flip_rate")},
        "last_layer": {k: la[k] for k in ("name", "rank", "mean_accuracy_drop", "mean_flip_rate")},
        "first_most_sensitive": f["mean_accuracy_drop"] >= max(drops) - eps,
        "first_most_sensitive_strict": f["rank"] == 1 and len(top) == 1,
        "layers_tied_most_sensitive": len(top),
        "last_least_sensitive": la["mean_accuracy_drop"] <= min(drops) + eps,
        "last_least_sensitive_by_flips": la["mean_flip_rate"] <= min(flips) + eps,
        "layers_tied_least_sensitive": len(bottom),
    }


# ------------------------------------------------------------------ outputs

CSV_COLUMNS = (
    "layer",
    "layer_name",
    "kind",
    "value",
    "accuracy",
    "accuracy_drop",
    "flip_rate",
    "changed_rate",
    "saturated",
    "saturated_share",
    "weights_changed",
    "seconds",
)


def write_outputs(result: GridResult, out_dir: Path, title: str = "") -> list[str]:
    """grid.csv, grid.json, ranking.csv, heatmap.png (+ one heatmap per kind); returns the file names."""
    import csv
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with open(out_dir / "grid.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.cells)
    written.append("grid.csv")
    with open(out_dir / "ranking.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["kind", "rank", "layer", "name", "mean_accuracy_drop", "mean_flip_rate", "worst_accuracy"]
        )
        for kind, rows in result.ranking.items():
            for r in rows:
                writer.writerow(
                    [kind, r["rank"], r["layer"], r["name"], f"{r['mean_accuracy_drop']:.4f}",
                     f"{r['mean_flip_rate']:.4f}", f"{r['worst_accuracy']:.4f}"]
                )  # fmt: skip
    written.append("ranking.csv")
    (out_dir / "grid.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    written.append("grid.json")
    if charts_available():  # optional (extra `charts`): the Docker image serves without matplotlib
        written += plot_heatmaps(result, out_dir, title)
    return written


def plot_heatmaps(result: GridResult, out_dir: Path, title: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer_names = [f"{lyr['index']:>2} {lyr['name']}" for lyr in result.layers]
    row_of = {lyr["index"]: i for i, lyr in enumerate(result.layers)}
    kinds = list(dict.fromkeys(p["kind"] for p in result.perturbations))
    height = 1.6 + 0.16 * len(layer_names)
    written = []

    def grid(kind: str, metric: str) -> tuple[np.ndarray, list[float]]:
        values = [p["value"] for p in result.perturbations if p["kind"] == kind]
        col = {v: j for j, v in enumerate(values)}
        mat = np.full((len(layer_names), len(values)), np.nan)
        for c in result.cells:
            if c["kind"] == kind and c.get(metric) is not None:
                mat[row_of[c["layer"]], col[c["value"]]] = c[metric]
        return mat, values

    axis_label = {
        "multiply": "x scalar",
        "add": "+ scalar",
        "noise": "sigma / weight std",
        "bitflip": "bit-flip rate",
    }

    def draw(
        ax: Any, mat: np.ndarray, values: list[float], label: str, cmap: str, show_names: bool, kind: str
    ) -> Any:
        im = ax.imshow(mat, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values], rotation=90, fontsize=7)
        ax.set_xlabel(axis_label.get(kind, kind), fontsize=8)
        ticks = layer_names if show_names else [""] * len(layer_names)
        ax.set_yticks(range(len(layer_names)), ticks, fontsize=6)
        ax.set_title(label, fontsize=9)
        return im

    # heatmap.png: accuracy for every kind side by side
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.2 + 2.6 * len(kinds), height), squeeze=False)
    im = None
    for j, kind in enumerate(kinds):
        mat, values = grid(kind, "accuracy")
        im = draw(axes[0, j], mat, values, f"accuracy: {kind}", "RdYlGn", j == 0, kind)
    fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.03, pad=0.02)
    fig.suptitle(
        f"{title} clean accuracy {result.clean['accuracy']:.3f} on {result.evalset['images']} images".strip(),
        fontsize=10,
        y=1.0 + 0.35 / height,
    )
    fig.savefig(out_dir / "heatmap.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    written.append("heatmap.png")

    # one figure per kind: accuracy, flip rate and (int8) saturation
    for kind in kinds:
        panels = [("accuracy", "accuracy", "RdYlGn"), ("flip_rate", "flip rate", "magma_r")]
        if any(c.get("saturated_share") is not None for c in result.cells if c["kind"] == kind):
            panels.append(("saturated_share", "saturated share", "Blues"))
        fig, axes = plt.subplots(1, len(panels), figsize=(2.2 + 2.8 * len(panels), height), squeeze=False)
        for j, (metric, label, cmap) in enumerate(panels):
            mat, values = grid(kind, metric)
            im = draw(axes[0, j], mat, values, f"{kind}: {label}", cmap, j == 0, kind)
            fig.colorbar(im, ax=axes[0, j], fraction=0.05, pad=0.02)
        fig.suptitle(f"{title} {kind}".strip(), fontsize=10, y=1.0 + 0.35 / height)
        name = f"heatmap_{kind}.png"
        fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written


# ------------------------------------------------------------------ one call for the CLI and the service


def load_model_for(card: ModelCard, models_dir: Path, precision: str) -> tuple[TFLiteModel, dict[str, Any]]:
    from masklite.card import verify_model_file

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
) -> GridResult:
    card = load_card(models_dir).for_precision(spec.precision)
    model, info = load_model_for(card, models_dir, spec.precision)
    if evalset_zip is not None:
        evalset = load_evalset(evalset_zip, card, limits, "upload", spec.max_images, spec.seed)
    else:
        path = evalset_path or default_evalset_path(models_dir)
        if not path.is_file():
            raise RobustnessError(f"no evaluation set at {path}: build the models or upload a zip")
        evalset = load_evalset_file(path, card, max_images=spec.max_images, seed=spec.seed)
    return run_grid(model, evalset, card, spec, workers, threads, progress, info)


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
