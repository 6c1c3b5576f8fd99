"""Phone photos at phone-photo cost: a scene upscaled to 12 MP against the same scene at 1024 px.

    python -m bench.phone [--runs 15] [--scene-limit N] [--json out.json]

Server-side cost in-process (masklite.pipeline.predict_image, the service's path: reduced-size JPEG decode,
detector, classifier), thread CPU ms, the two sizes interleaved. Then, on every scene upscaled to 12 MP:
are the boxes (IoU >= 0.9) and labels the same with the reduced-size decode as with the full decode of
the same file (what the reduction changes), and as on the scene itself (information: the detector also
reacts to the resampling and JPEG re-encoding of the upscaled copy)? The detector's own floor comes with
them: two equally valid 12 MP copies of each scene (bicubic and Lanczos upscaling), both decoded at full
size. YuNet moves boxes on hard faces for changes of a grey level or two, so "the same box" is only as
stable as that floor.
"""

from __future__ import annotations

import io
import math
import sys
import time
from typing import Any

from PIL import Image
from tqdm import tqdm

from bench import stats
from bench.inprocess import detector_or_problem, load_classifiers
from bench.sections import SectionOptions, run_section_cli, start_section
from masklite.faces import match_boxes
from masklite.pipeline import Models, PredictOptions, predict_image

PHONE_PIXELS = 12_000_000
REFERENCE_SIDE = 1024
JPEG_QUALITY = 90  # a phone camera's usual setting


def resized_jpeg(
    data: bytes,
    *,
    pixels: int | None = None,
    long_side: int | None = None,
    resample: Image.Resampling = Image.Resampling.BICUBIC,
) -> bytes:
    """The image re-encoded at `pixels` total (12 MP) or with its longer side at `long_side`."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    scale = math.sqrt(pixels / (w * h)) if pixels else long_side / max(w, h)  # type: ignore[operator]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = io.BytesIO()
    img.resize(size, resample).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def same_faces(reference: list, other: list, scale: float = 1.0, min_iou: float = 0.9) -> tuple[int, int]:
    """(reference faces found in `other` with IoU >= `min_iou` and the same label, faces in either);
    `other`'s boxes are divided by `scale` first (a 12 MP copy against the scene)."""
    mapped = [tuple(round(v / scale) for v in f.box) for f in other]
    pairs = match_boxes([f.box for f in reference], mapped, min_iou)
    n = max(len(reference), len(other))  # a face only one of them found counts against
    return sum(reference[i].label == other[j].label for i, j in pairs), n


def phone_costs(options: SectionOptions) -> dict[str, Any]:
    section = start_section(options)
    card, scenes, models_dir = section.card, section.scenes, options.models_dir
    detector, problem = detector_or_problem(card, options.detector_path, None, models_dir)
    if detector is None:
        return {"error": f"no detector: {problem}"}
    if not scenes:
        return {"error": "no scenes: set MASKLITE_SCENES_DIR"}
    classifier = load_classifiers(card, models_dir, ["int8"])["int8"]

    def run(data: bytes, reduce: bool = True) -> Any:
        return predict_image(
            data, Models(card, classifier, detector), PredictOptions(model="int8", reduce=reduce)
        )

    scene = scenes[0]
    photos = {
        "12mp": resized_jpeg(scene.data, pixels=PHONE_PIXELS),
        f"{REFERENCE_SIDE}px": resized_jpeg(scene.data, long_side=REFERENCE_SIDE),
    }
    info = {}
    for name, data in photos.items():
        res = run(data)
        info[name] = {"bytes": len(data), "size": [res.width, res.height], "decoded": list(res.decoded_size)}
    cpu: dict[str, list[float]] = {name: [] for name in photos}
    for _ in tqdm(range(options.runs), desc="phone: 12 MP vs 1024 px", file=sys.stderr, leave=False):
        for name, data in photos.items():
            c0 = time.thread_time()
            run(data)
            cpu[name].append((time.thread_time() - c0) * 1e3)
    summary = {name: stats.summarize(v) for name, v in cpu.items()}
    big, ref = summary["12mp"].get("p50"), summary[f"{REFERENCE_SIDE}px"].get("p50")
    counts = {key: [0, 0] for key in ("full", "scene", "floor", "label")}
    for s in tqdm(scenes, desc="phone: scenes at 12 MP", file=sys.stderr, leave=False):
        data = resized_jpeg(s.data, pixels=PHONE_PIXELS)
        lanczos = resized_jpeg(s.data, pixels=PHONE_PIXELS, resample=Image.Resampling.LANCZOS)
        reduced, full, scene_res = run(data), run(data, reduce=False), run(s.data)
        faces = {
            "full": (full.faces, reduced.faces, 1.0, 0.9),
            "scene": (
                scene_res.faces,
                reduced.faces,
                reduced.width / scene_res.width,
                0.9,
            ),
            "floor": (full.faces, run(lanczos, reduce=False).faces, 1.0, 0.9),
            "label": (full.faces, reduced.faces, 1.0, 0.5),  # same face, same label
        }
        for key, (base, other, scale, min_iou) in faces.items():
            k, n = same_faces(base, other, scale, min_iou)
            counts[key][0] += k
            counts[key][1] += n
    return {
        "scene": scene.name,
        "photos": info,
        "server_cpu_ms": summary,
        "ratio": round(big / ref, 3) if big and ref else None,
        "scenes": len(scenes),
        # reduced-size decode vs full decode of the same 12 MP file
        "faces": counts["full"][1],
        "same_faces": counts["full"][0],
        "same_share": _share(*counts["full"]),
        # reduced-size decode of the 12 MP copy vs the scene itself
        "same_share_vs_scene": _share(*counts["scene"]),
        # the detector's own floor: full decodes of a bicubic and a Lanczos 12 MP copy of each scene
        "same_share_floor": _share(*counts["floor"]),
        # reduced vs full decode: the same face (IoU >= 0.5) with the same label
        "same_label_share": _share(*counts["label"]),
        "conditions": section.conditions(),
    }


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def format_phone(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"phone photos: {result['error']}"
    cpu = result["server_cpu_ms"]
    parts = [
        f"{name} ({result['photos'][name]['size'][0]}x{result['photos'][name]['size'][1]}, decoded "
        f"{result['photos'][name]['decoded'][0]}x{result['photos'][name]['decoded'][1]}): "
        f"{cpu[name].get('p50', 0):.1f} ms"
        for name in cpu
    ]
    return "\n".join(
        [
            stats.conditions_line(result.get("conditions")),
            f"Phone photo, server CPU p50 on {result['scene']}: " + "; ".join(parts),
            f"  12 MP / {REFERENCE_SIDE} px: {result['ratio']}x",
            f"  scenes at 12 MP, reduced vs full decode: {result['same_faces']} of {result['faces']} faces"
            f" with the same box (IoU>=0.9) and label ({result['same_share']}); reduced vs the scene itself: "
            f"{result['same_share_vs_scene']}",
            f"  the detector's own floor (full decodes of a bicubic and a Lanczos 12 MP copy): "
            f"{result.get('same_share_floor')}; reduced vs full, same face (IoU>=0.5) and label: "
            f"{result.get('same_label_share')}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return run_section_cli(argv, "python -m bench.phone", __doc__ or "", 15, phone_costs, format_phone)


if __name__ == "__main__":
    raise SystemExit(main())
