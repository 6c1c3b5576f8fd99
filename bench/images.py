"""The standard image set: the annotated scenes, plus one 640x480 JPEG with faces made from a scene.

The service targets are stated for "a 640x480 JPEG with up to 4 faces"; no such file ships with the
scenes, so it is cut deterministically from the first scene whose 2-4 annotated faces fit in a 4:3 crop.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from masklite.paths import ENV_SCENES_DIR

TARGET_SIZE = (640, 480)  # width, height
TARGET_NAME = "target_640x480.jpg"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class GroundTruth:
    box: tuple[int, int, int, int]  # x, y, w, h
    label: str


@dataclass
class BenchImage:
    name: str
    data: bytes
    truth: list[GroundTruth] = field(default_factory=list)  # empty when unknown (uploaded images)
    annotated: bool = False


def scenes_dir(explicit: Path | str | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    value = os.environ.get(ENV_SCENES_DIR)
    return Path(value) if value else None


def parse_voc(xml_text: str) -> list[GroundTruth]:
    root = ET.fromstring(xml_text)
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        x0, y0, x1, y1 = (int(round(float(bb.findtext(k, "0")))) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append(GroundTruth(box=(x0, y0, x1 - x0, y1 - y0), label=(obj.findtext("name") or "").strip()))
    return out


def load_scenes(directory: Path, limit: int | None = None) -> list[BenchImage]:
    """images/*.jpg with their VOC annotations/*.xml (missing annotation -> unannotated image)."""
    images = []
    for path in sorted((directory / "images").glob("*.jpg"))[:limit]:
        xml = directory / "annotations" / (path.stem + ".xml")
        truth = parse_voc(xml.read_text()) if xml.is_file() else []
        images.append(BenchImage(path.name, path.read_bytes(), truth, annotated=xml.is_file()))
    return images


def _crop_for(
    size: tuple[int, int], truth: list[GroundTruth], aspect: float
) -> tuple[int, int, int, int] | None:
    """The largest `aspect` crop that holds every box, or None."""
    width, height = size
    x0 = min(t.box[0] for t in truth)
    y0 = min(t.box[1] for t in truth)
    x1 = max(t.box[0] + t.box[2] for t in truth)
    y1 = max(t.box[1] + t.box[3] for t in truth)
    cw = min(width, int(height * aspect))
    ch = int(round(cw / aspect))
    if cw < x1 - x0 or ch < y1 - y0 or ch > height:
        return None
    # centre the crop on the faces, then slide it back inside the image
    cx = min(max((x0 + x1) / 2 - cw / 2, 0), width - cw)
    cy = min(max((y0 + y1) / 2 - ch / 2, 0), height - ch)
    return int(cx), int(cy), cw, ch


def make_target_image(scenes: list[BenchImage], max_faces: int = 4) -> BenchImage | None:
    """A 640x480 JPEG with 2..max_faces annotated faces, cut from the scene set (same bytes every run)."""
    tw, th = TARGET_SIZE
    candidates = sorted(
        (s for s in scenes if 2 <= len(s.truth) <= max_faces), key=lambda s: (-len(s.truth), s.name)
    )
    for scene in candidates:
        img = Image.open(io.BytesIO(scene.data)).convert("RGB")
        crop = _crop_for(img.size, scene.truth, tw / th)
        if crop is None or crop[2] < tw:  # never upscale: the target is a real 640x480 photo
            continue
        x, y, w, h = crop
        scale = tw / w
        out = img.crop((x, y, x + w, y + h)).resize(TARGET_SIZE, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=JPEG_QUALITY)
        truth = [
            GroundTruth(
                box=(
                    int(round((t.box[0] - x) * scale)),
                    int(round((t.box[1] - y) * scale)),
                    int(round(t.box[2] * scale)),
                    int(round(t.box[3] * scale)),
                ),
                label=t.label,
            )
            for t in scene.truth
        ]
        return BenchImage(f"{TARGET_NAME} (from {scene.name})", buf.getvalue(), truth, annotated=True)
    return None


def load_files(paths: list[Path]) -> list[BenchImage]:
    return [BenchImage(p.name, p.read_bytes()) for p in paths]
