r"""The int8 classifier as ONNX, for the camera page's device mode (onnxruntime-web, WebAssembly).

Run it once, outside the project's locked venv (tf2onnx 1.16 pins protobuf 3.20 and predates NumPy 2):

    pip install --no-deps --target /tmp/t2o tf2onnx==1.16.1 onnx==1.23.2
    PYTHONPATH=.:/tmp/t2o .venv/bin/python tools/convert_classifier.py --out models/

tf2onnx reads the shipped `masklite_int8.tflite` (same weights, same int8 scales: QuantizeLinear /
DequantizeLinear around each op), opset 17. Two edits make the file easy to call from a page:
  - the batch dimension becomes symbolic ("faces"): all faces of a frame go in one run;
  - the int8 input and output get a QuantizeLinear / DequantizeLinear with the .tflite's own scale and
    zero point, so the page feeds float32 `pixel * scale + offset` (the card's preprocessing) and reads
    float32 probabilities, like `masklite.classifier.Classifier.predict`.
With `--out` the models folder (the default), the card's entry then lists it under
`runtime_files["onnxruntime-web"]` with its sha256; tests/service/test_device_models.py checks it against
LiteRT on real face crops. `--precision micro` converts the microcontroller model the same way.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from masklite.card import DerivedDetectorFile, load_card, save_card

OPSET = 17
RUNTIME = "onnxruntime-web"  # the card's key for these files (service/static/device.js reads it)


class _NumpyCastShim:
    """tf2onnx 1.16 constant-folds Cast with `np.cast[dtype](x)`, removed in NumPy 2."""

    def __getitem__(self, dtype: object):  # noqa: ANN204 - mimics the removed API
        return lambda x: np.asarray(x, dtype=dtype)


def _quant_params(tflite: Path) -> tuple[tuple[float, int], tuple[float, int]]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite))
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    return (float(i["quantization"][0]), int(i["quantization"][1])), (
        float(o["quantization"][0]),
        int(o["quantization"][1]),
    )


def convert(tflite: Path, out: Path) -> str:
    np.cast = _NumpyCastShim()  # type: ignore[attr-defined]
    import onnx
    import tf2onnx
    from onnx import TensorProto, helper

    model, _ = tf2onnx.convert.from_tflite(str(tflite), opset=OPSET)
    graph = model.graph
    raw_in, raw_out = graph.input[0], graph.output[0]
    height, width, channels = (d.dim_value for d in raw_in.type.tensor_type.shape.dim[1:])
    classes = raw_out.type.tensor_type.shape.dim[1].dim_value
    if raw_in.type.tensor_type.elem_type == TensorProto.FLOAT:  # a float model: new names only
        edges = [
            helper.make_node("Identity", ["pixels"], [raw_in.name]),
            helper.make_node("Identity", [raw_out.name], ["probabilities"]),
        ]
    else:
        # float32 "pixels" (N, H, W, 3) -> int8 -> the converted graph -> int8 -> float32 probabilities
        (in_scale, in_zero), (out_scale, out_zero) = _quant_params(tflite)
        graph.initializer.extend(
            [
                helper.make_tensor("in_scale", TensorProto.FLOAT, [], [in_scale]),
                helper.make_tensor("in_zero", TensorProto.INT8, [], [in_zero]),
                helper.make_tensor("out_scale", TensorProto.FLOAT, [], [out_scale]),
                helper.make_tensor("out_zero", TensorProto.INT8, [], [out_zero]),
            ]
        )
        edges = [
            helper.make_node("QuantizeLinear", ["pixels", "in_scale", "in_zero"], [raw_in.name]),
            helper.make_node("DequantizeLinear", [raw_out.name, "out_scale", "out_zero"], ["probabilities"]),
        ]
    nodes = [edges[0], *graph.node, edges[1]]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["faces", height, width, channels])
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["faces", classes]))
    del graph.value_info[:]  # recorded shapes carry the batch of 1
    model.producer_name = "masklite tools/convert_classifier.py"
    onnx.checker.check_model(model)
    out.write_bytes(model.SerializeToString())
    return hashlib.sha256(out.read_bytes()).hexdigest()


def compare(tflite: Path, onnx_path: Path, n: int = 64, seed: int = 0) -> float:
    """Largest |p_onnx - p_litert| over `n` random input images (the test compares real face crops)."""
    import onnxruntime as ort

    from masklite.classifier import Classifier

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    classifier = Classifier(tflite)
    x = np.random.default_rng(seed).uniform(-1, 1, (n, *classifier.input_size, 3)).astype(np.float32)
    return float(np.abs(session.run(None, {"pixels": x})[0] - classifier.predict(x)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", type=Path, default=Path("models"), help="folder with the card and .tflite"
    )
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--precision", default="int8", help="the card's model to convert (int8, micro, ...)")
    args = parser.parse_args()
    source = args.models / load_card(args.models).models[args.precision].file
    target = args.out / source.with_suffix(".onnx").name
    sha = convert(source, target)
    print(f"{target}: {target.stat().st_size} bytes, sha256 {sha}")
    print(f"max |p| difference to LiteRT on random inputs: {compare(source, target):.4f}")
    if args.out.resolve() == args.models.resolve():  # shipped: the card names it with its sha256
        card = load_card(args.models)
        entry = card.models[args.precision]
        entry.runtime_files[RUNTIME] = DerivedDetectorFile(
            file=target.name, sha256=sha, provenance=_provenance(entry)
        )
        save_card(card, args.models)
        print(f"model_card.json: models.{args.precision}.runtime_files.{RUNTIME} updated")


def _provenance(entry: object) -> str:
    import onnx
    import tf2onnx

    return (
        f"converted from {entry.file} (sha256 {entry.sha256[:8]}\u2026) by tools/convert_classifier.py "  # type: ignore[attr-defined]
        f"(tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}, opset {OPSET}): the same weights and "
        "int8 scales (QuantizeLinear/DequantizeLinear); batch made symbolic; float32 input (the card's "
        "pixel * scale + offset) and float32 probabilities, through the .tflite's own input/output scale "
        "and zero point. Not byte-reproducible (tf2onnx names nodes differently on each run): the card "
        "pins this file; tests/service/test_device_models.py checks it against LiteRT"
    )


if __name__ == "__main__":
    main()
