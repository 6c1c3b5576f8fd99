"""TensorFlow Lite Micro checks for the micro model (no TensorFlow needed, so tests import this directly).

* `tflm_outputs` runs int8 inputs through TFLM's Python interpreter (`tflite_micro`, reference kernels).
* `litert_outputs` runs the same int8 inputs through LiteRT, the service's runtime, for the agreement check.
* `min_arena` finds the smallest tensor arena that works by binary search. A probe with too small an arena
  can crash the process (TFLM logs "Failed to allocate ..." and the wrapper segfaults), so every probe runs in
  a fresh subprocess: a probe passes when the model allocates, invokes and returns the expected output.
* `count_macs` counts multiply-accumulates from the TFLite graph (conv, depthwise conv, fully connected).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARENA_SEARCH_MAX = 4 << 20


def _tflm():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def tflm_interpreter(model: bytes, arena_size: int):
    return _tflm().Interpreter.from_bytes(model, arena_size=arena_size)


def tflm_outputs(model: bytes, inputs: np.ndarray, arena_size: int) -> np.ndarray:
    """(N, H, W, C) int8 -> (N, classes) int8 raw outputs from TFLM."""
    interp = tflm_interpreter(model, arena_size)
    outs = []
    for x in inputs:
        interp.set_input(x[None], 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(outs)


def litert_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """(N, H, W, C) int8 -> (N, classes) int8 raw outputs from LiteRT (1 thread, batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model, num_threads=1)
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    outs = []
    for x in inputs:
        interp.set_tensor(i, x[None])
        interp.invoke()
        outs.append(interp.get_tensor(o)[0].copy())
    return np.stack(outs)


def quantize_input(model: bytes, x: np.ndarray) -> np.ndarray:
    """Normalised float32 batch -> the model's int8 input (same rounding as masklite.classifier)."""
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_content=model).get_input_details()[0]
    scale, zero_point = detail["quantization"]
    return np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)


def agreement(model: bytes, inputs_int8: np.ndarray, arena_size: int) -> dict:
    """TFLM vs LiteRT on the same int8 inputs: label agreement and raw output differences."""
    a = tflm_outputs(model, inputs_int8, arena_size).astype(np.int32)
    b = litert_outputs(model, inputs_int8).astype(np.int32)
    return {
        "n": int(len(a)),
        "label_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "identical_outputs": float((a == b).all(axis=1).mean()),
        "max_abs_diff_int8_steps": int(np.abs(a - b).max()) if len(a) else 0,
    }


# ---------------------------------------------------------------- arena


_PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
interp = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
d = interp.get_input_details(0)
interp.set_input(np.zeros(d["shape"], d["dtype"]), 0)
interp.invoke()
out = np.array(interp.get_output(0))
if sys.argv[3] == "save":
    np.save(sys.argv[4], out)
    sys.exit(0)
sys.exit(0 if sys.argv[3] == "none" or np.array_equal(out, np.load(sys.argv[4])) else 3)
"""


def arena_works(model_path: Path, arena_size: int, expected: Path | None = None, save: bool = False) -> bool:
    """Does TFLM allocate and run the model with this arena (and give `expected`, when given)?
    A fresh process: a failure may segfault. With save=True the output is written to `expected`."""
    cmd = [sys.executable, "-c", _PROBE, str(model_path), str(int(arena_size))]
    if expected is not None:
        cmd += ["save" if save else "check", str(expected)]
    else:
        cmd += ["none", ""]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(cmd, capture_output=True, env=env, timeout=120).returncode == 0


def min_arena(model_path: Path, hi: int = ARENA_SEARCH_MAX, granularity: int = 1) -> dict:
    """Smallest arena (bytes, to `granularity`) with which the model runs and gives the same output as
    with a generous arena. Binary search on a monotone predicate; every probe is a fresh process."""
    model_path = Path(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        expected = Path(tmp) / "expected.npy"
        if not arena_works(model_path, hi, expected, save=True):
            raise RuntimeError(f"{model_path.name} does not run in TFLM even with a {hi}-byte arena")
        lo, probes = 0, 0  # invariant: lo fails (0 always does), hi works
        t0 = time.perf_counter()
        while hi - lo > granularity:
            mid = (lo + hi) // 2
            probes += 1
            if arena_works(model_path, mid, expected):
                hi = mid
            else:
                lo = mid
        return {
            "arena_bytes": int(hi),
            "fails_at": int(lo),
            "probes": probes,
            "seconds": round(time.perf_counter() - t0, 1),
            "method": "binary search, fresh process per probe",
        }


def allocations_report(model: bytes, arena_size: int) -> str:
    """TFLM's own RecordingMicroAllocator breakdown (written by C++ to fd 2; captured here)."""
    interp = tflm_interpreter(model, arena_size)
    d = interp.get_input_details(0)
    interp.set_input(np.zeros(d["shape"], d["dtype"]), 0)
    interp.invoke()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


# ---------------------------------------------------------------- graph


def count_macs(model: bytes) -> dict:
    """MACs per op type from the TFLite graph's conv / depthwise / fully-connected shapes (batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    shapes = {t["index"]: tuple(int(v) for v in t["shape"]) for t in interp.get_tensor_details()}
    per_op: dict[str, int] = {}
    ops: dict[str, int] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op list
        name = op["op_name"]
        ops[name] = ops.get(name, 0) + 1
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out = shapes[op["outputs"][0]]
        w = shapes[op["inputs"][1]]
        if name == "CONV_2D":  # out (1, H, W, Cout), w (Cout, kh, kw, Cin)
            macs = out[1] * out[2] * w[0] * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D":  # w (1, kh, kw, C)
            macs = out[1] * out[2] * w[1] * w[2] * w[3]
        else:  # w (units, in)
            macs = w[0] * w[1]
        per_op[name] = per_op.get(name, 0) + int(macs)
    return {"total": int(sum(per_op.values())), "per_op": per_op, "ops": ops}


# ---------------------------------------------------------------- latency


def latency_ms(model: bytes, arena_size: int, runs: int = 50, rounds: int = 5) -> dict:
    """Median ms per image, batch 1, for LiteRT (1 thread) and TFLM (reference kernels, this x86 CPU),
    interleaved in rounds so a busy shared CPU affects both alike."""
    from ai_edge_litert.interpreter import Interpreter

    lite = Interpreter(model_content=model, num_threads=1)
    lite.allocate_tensors()
    li, lo = lite.get_input_details()[0], lite.get_output_details()[0]
    micro = tflm_interpreter(model, arena_size)
    x = np.random.default_rng(0).integers(-128, 128, li["shape"], dtype=np.int8)

    def run_lite() -> None:
        lite.set_tensor(li["index"], x)
        lite.invoke()
        lite.get_tensor(lo["index"])

    def run_micro() -> None:
        micro.set_input(x, 0)
        micro.invoke()
        micro.get_output(0)

    times: dict[str, list[float]] = {"litert": [], "tflm": []}
    for fn in (run_lite, run_micro):
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for name, fn in (("litert", run_lite), ("tflm", run_micro)):
            for _ in range(max(1, runs // rounds)):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {
        k: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "runs": len(v)}
        for k, v in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    """python -m training.micro.tflm model.tflite -> arena search and MACs, as JSON."""
    path = Path((sys.argv[1:] if argv is None else argv)[0])
    print(json.dumps({"arena": min_arena(path), "macs": count_macs(path.read_bytes())}, indent=1))


if __name__ == "__main__":
    main()
