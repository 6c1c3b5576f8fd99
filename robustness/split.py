"""A model cut in two just before one op, so that perturbing that op's weights re-runs only the second half.

Perturbing layer k only changes what comes after it: the prefix runs once per layer, each perturbation
re-runs only the suffix. Both halves are ordinary .tflite flatbuffers rebuilt with the schema's object API;
the suffix keeps the weights byte-identical, so `surgery.TFLiteModel.patched` applies to it unchanged.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from masklite.classifier import dequantize, quantize


class ModelSplit:
    """A prefix that computes every tensor still needed after the cut (the op's input plus any skip
    connections), and a suffix that starts from those tensors."""

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
        # nothing to save: the cut is at the graph's input
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
        """Memory the live tensors of `n_images` images take: the cost of caching them."""
        interp = Interpreter(model_content=self.prefix)
        return n_images * sum(int(np.prod(d["shape"][1:])) * np.dtype(d["dtype"]).itemsize
                              for d in interp.get_output_details())  # fmt: skip

    @staticmethod
    def run_suffix(suffix: bytes, acts: dict[int, np.ndarray], num_threads: int = 1) -> np.ndarray:
        """A suffix (perhaps patched) on cached activations -> (N, classes) float32 probabilities."""
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
            probs[i] = dequantize(interp.get_tensor(out["index"])[0], out)
        return probs


def _pack(model: Any, size_hint: int) -> bytes:
    builder = flatbuffers.Builder(size_hint + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
