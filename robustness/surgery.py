"""Model surgery on a .tflite file, without TensorFlow: find every weighted layer's tensor in the model bytes,
read its weights, and write a copy of the model with one tensor's data replaced.

The flatbuffer is parsed with the schema reader bundled with ai-edge-litert. A patched model is the same
bytes with one tensor's data rewritten in place: same size, so every other offset in the flatbuffer stays
valid and the copy loads in an ordinary interpreter.

int8 weights carry their own (per-channel) scales and zero points; `dequantize_weights` and
`requantize_weights` move between stored int8 and real values with exactly those parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from robustness.errors import RobustnessError

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
INT8_MIN, INT8_MAX = -127, 127  # TFLite int8 weights are symmetric: -128 is never produced

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int) and k.isupper()}
_DTYPES = {schema.TensorType.FLOAT32: np.dtype(np.float32), schema.TensorType.INT8: np.dtype(np.int8)}
_SHORT_OP = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "dense"}


@dataclass(frozen=True)
class WeightedLayer:
    """Where one weighted op's weight tensor lives in the model bytes, and how it is stored."""

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
        self.layers, self.skipped = find_weighted_layers(self.data)
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
        """The weights in real units (float64): int8 ones dequantized with the tensor's own parameters."""
        raw = self.raw_weights(layer)
        if layer.dtype == "float32":
            return raw.astype(np.float64)
        return dequantize_weights(raw, layer)

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


def find_weighted_layers(data: bytes) -> tuple[list[WeightedLayer], list[str]]:
    """The weight tensor of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op of the first subgraph,
    and a note for each such op whose weights cannot be patched (not constant, not float32/int8)."""
    try:
        model = schema.Model.GetRootAs(data, 0)
        subgraph = model.Subgraphs(0) if model.SubgraphsLength() else None
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a tflite flatbuffer"
        raise RobustnessError(f"not a readable .tflite model: {exc}") from exc
    if subgraph is None:  # bytes that happen to parse (zeros, say) but hold no graph
        raise RobustnessError("not a readable .tflite model: it has no subgraph")
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
        dtype = _DTYPES.get(tensor.Type())
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
    names = short_names([(name, tname) for _, name, _, tname in found])
    layers = [
        WeightedLayer(i, op_index, name, names[i], tname, *info)
        for i, (op_index, name, info, tname) in enumerate(found)
    ]
    return layers, skipped


def short_names(ops: list[tuple[str, str]]) -> list[str]:
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


# ------------------------------------------------------------------ int8 weights <-> real values


def _per_channel(params: Sequence[float], values: np.ndarray, layer: WeightedLayer) -> np.ndarray:
    """A per-tensor or per-channel quantization parameter, shaped to broadcast against the weights."""
    arr = np.asarray(params, dtype=np.float64)
    if arr.size == 1:
        return arr.reshape(())
    shape = [1] * values.ndim
    shape[layer.quantized_dimension] = arr.size
    return arr.reshape(shape)


def dequantize_weights(raw: np.ndarray, layer: WeightedLayer) -> np.ndarray:
    """Stored int8 weights -> real values (float64) with the layer's own scales and zero points."""
    zero = _per_channel(layer.zero_points, raw, layer)
    return (raw.astype(np.float64) - zero) * _per_channel(layer.scales, raw, layer)


def requantize_weights(values: np.ndarray, layer: WeightedLayer) -> tuple[np.ndarray, int]:
    """Real values -> int8 with the layer's SAME scales, clipped to [-127, 127]: keeping the scales is what
    makes a perturbation saturate instead of being absorbed. Returns (int8 weights, how many were clipped)."""
    scale = _per_channel(layer.scales, values, layer)
    q = np.round(values / scale + _per_channel(layer.zero_points, values, layer))
    saturated = int(np.count_nonzero((q < INT8_MIN) | (q > INT8_MAX) | ~np.isfinite(q)))
    q = np.nan_to_num(q, nan=0.0, posinf=INT8_MAX, neginf=INT8_MIN)
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8), saturated
