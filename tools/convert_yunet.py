r"""Derive detector files from the upstream YuNet ONNX (opencv_zoo face_detection_yunet_2023mar).

Run it in a throwaway venv, never the project's (its converters pin other TensorFlow/ONNX versions):

    python3 -m venv /tmp/conv && /tmp/conv/bin/pip install onnx onnxsim onnxruntime onnx2tf tensorflow-cpu \
        tf-keras onnx-graphsurgeon sng4onnx psutil ai-edge-litert
    /tmp/conv/bin/python tools/convert_yunet.py dynamic --src $MASKLITE_DETECTOR_PATH --out models/
    /tmp/conv/bin/python tools/convert_yunet.py tflite --src $MASKLITE_DETECTOR_PATH --out models/

`dynamic`: the same graph and weights with a symbolic input height/width (the graph's reshapes use -1, so
that is the only edit), so onnxruntime runs YuNet at each image's own aspect ratio. The outputs are checked
against the upstream file at 640x640 (same numbers) before the file is written.
`tflite`: the same graph for LiteRT. onnx2tf bakes the heads' reshapes in at one size, so the graph is cut
before them (each head's conv map is an output; decoding reads it row by row, as the reshape did): one
float32 file then runs at any input size (`resize_tensor_input`). Checked against onnxruntime in the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_input_dims(model: onnx.ModelProto, height: int | str, width: int | str) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in ((dims[2], height), (dims[3], width)):
        dim.Clear()
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    # output and intermediate shapes were recorded for 640x640: drop them, runtimes infer them again
    for out in model.graph.output:
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            if i == 1:
                dim.Clear()
                dim.dim_param = "anchors"
    del model.graph.value_info[:]


def _run(path: Path | bytes, blob: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: blob})


def make_dynamic(src: Path, out_dir: Path) -> Path:
    model = onnx.load(str(src))
    _set_input_dims(model, "height", "width")
    onnx.checker.check_model(model)
    target = out_dir / (src.stem + "_dynamic.onnx")
    data = model.SerializeToString()
    rng = np.random.default_rng(0)
    blob = rng.uniform(0, 255, (1, 3, 640, 640)).astype(np.float32)
    for a, b in zip(_run(str(src), blob), _run(data, blob), strict=True):
        if not np.allclose(a, b, atol=1e-5):
            raise SystemExit("dynamic graph differs from the upstream file at 640x640")
    shapes = [o.shape for o in _run(data, blob[:, :, :480, :])]  # runs at another aspect ratio
    target.write_bytes(data)
    print(f"{target}  sha256 {_sha256(target)}  {target.stat().st_size} bytes")
    print(f"output shapes at 480x640: {shapes[:3]}")
    return target


def _head_maps(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph cut before each head's Transpose + Reshape(1, -1, C): the twelve outputs become the conv
    maps (sigmoid kept on cls/obj), which have no fixed shape in them, so one TFLite file serves every
    input size (`resize_tensor_input`). Decoding reads the maps row by row, as the reshape did."""
    from onnx import helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    names = [o.name for o in graph.output]
    heads = []
    for name in names:
        node = producer[name]
        while node.op_type != "Transpose":
            node = producer[node.input[0]]
        op = "Sigmoid" if name.startswith(("cls", "obj")) else "Identity"
        heads.append(helper.make_node(op, [node.input[0]], [name], name=f"{name}_map"))
    # the old tails (Transpose -> Reshape [-> Sigmoid]) go: keep only what the new outputs need
    nodes = [n for n in graph.node if not set(n.output) & set(names)] + heads
    needed, keep = set(names), []
    for node in reversed(nodes):
        if set(node.output) & needed:
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    del graph.output[:]
    graph.output.extend(
        helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["n", "c", "h", "w"]) for n in names
    )
    onnx.checker.check_model(model)
    return model


def make_tflite(src: Path, out_dir: Path) -> Path:
    """One float32 .tflite for every input size (onnx2tf on the symbolic-size graph, heads cut)."""
    model = onnx.load(str(src))
    _set_input_dims(model, "height", "width")
    model = _head_maps(model)
    work = out_dir / "yunet_tflite"
    work.mkdir(parents=True, exist_ok=True)
    graph = work / "yunet_maps.onnx"
    onnx.save(model, str(graph))
    # onnx2tf tries to download a calibration sample unless this file is in the working directory
    calib = work / "calibration_image_sample_data_20x128x128x3_float32.npy"
    if not calib.exists():
        np.save(calib, np.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(np.float32))
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(graph), "-o", str(work / "saved")]
    subprocess.run(cmd, cwd=work, check=True)
    target = out_dir / (src.stem + "_dynamic_float32.tflite")
    shutil.copyfile(work / "saved" / "yunet_maps_float32.tflite", target)
    print(f"{target}  sha256 {_sha256(target)}  {target.stat().st_size} bytes")
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["dynamic", "tflite"])
    ap.add_argument("--src", type=Path, required=True, help="upstream face_detection_yunet_2023mar.onnx")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "dynamic":
        make_dynamic(args.src, args.out)
    else:
        make_tflite(args.src, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
