"""Test videos with known people: pans and zooms across annotated scene photos, with cuts between scenes.

There is no real video of masked people here, so the clips are made from the shared scenes
(scenes-sample, macwinwin-scenes): a 640x480 window moves across a scene (a pan, a zoom), then the clip
cuts to the next scene. The scene's annotated face boxes, moved with the window, are the true tracks and
labels: one person per annotated face per shot.

    clip = render_clip(plan_shots([scenes_dir], names), fps=10, seconds_per_shot=2)
    encode(clip.frames, "pan.mp4", fps=10)      # ffmpeg: mp4 (H.264), webm (VP9), avi (MJPEG), gif
    clip.truth.people -> {person id: label}; clip.truth.frames[i] -> [TrueFace(person, label, box)]

Used by bench/video.py and by the video tests (tests/masklite/conftest.py); needs `ffmpeg` on PATH to
encode.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from masklite.faces import YuNet, match_boxes

SIZE = (640, 480)  # width, height of every clip
Rect = tuple[float, float, float, float]  # x, y, w, h in scene pixels
Box = tuple[int, int, int, int]
# a face counts as in view when this share of its box is inside the frame (a detector still finds a face
# half out of view, so the truth must count it too)
VISIBLE_SHARE = 0.5
# a found box belongs to a true one when this share of the smaller box lies inside the other: annotated
# boxes are often looser than YuNet's (hair, chin), so IoU alone would call a right answer wrong
MATCH_SHARE = 0.5

ENCODERS: dict[str, list[str]] = {
    "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "20",
            "-movflags", "+faststart"],
    "webm": ["-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "32", "-deadline", "realtime", "-cpu-used", "8",
             "-pix_fmt", "yuv420p"],
    "avi": ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"],
    "gif": ["-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer"],
}  # fmt: skip


@dataclass(frozen=True)
class SceneFace:
    label: str
    box: Box


@dataclass(frozen=True)
class Shot:
    image: Path
    faces: tuple[SceneFace, ...]
    start: Rect  # the window at the shot's first frame, in scene pixels (aspect 4:3)
    end: Rect  # ... and at its last


@dataclass(frozen=True)
class TrueFace:
    person: int
    label: str
    box: Box


@dataclass
class Truth:
    fps: float
    frames: list[list[TrueFace]] = field(default_factory=list)
    people: dict[int, str] = field(default_factory=dict)  # person id -> label (seen in enough frames)


@dataclass
class Clip:
    frames: list[np.ndarray]  # RGB uint8, 480x640
    truth: Truth


def read_voc(xml_path: Path) -> list[SceneFace]:
    root = ET.parse(xml_path).getroot()
    faces = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        x0, y0, x1, y1 = (round(float(bb.findtext(k, "0"))) for k in ("xmin", "ymin", "xmax", "ymax"))
        faces.append(SceneFace((obj.findtext("name") or "").strip(), (x0, y0, x1 - x0, y1 - y0)))
    return faces


def suitable_scenes(directory: Path, max_faces: int = 4, min_face_share: float = 0.06) -> list[str]:
    """Scene stems with 1..max_faces faces, each at least `min_face_share` of the scene's width (after
    the clip's scaling such a face is still ~45 px: big enough to detect and to judge)."""
    out = []
    for xml_path in sorted((directory / "annotations").glob("*.xml")):
        faces = read_voc(xml_path)
        image = directory / "images" / f"{xml_path.stem}.jpg"
        if not faces or len(faces) > max_faces or not image.is_file():
            continue
        width = int(ET.parse(xml_path).getroot().findtext("size/width", "0") or 0)
        if width and min(f.box[2] for f in faces) >= min_face_share * width:
            out.append(xml_path.stem)
    return out


def overlap_share(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return iw * ih / smaller if smaller > 0 else 0.0


def match_faces(truth: Sequence[Box], found: Sequence[Box]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best overlap share first: [(truth index, found index)]."""
    return match_boxes(truth, found, MATCH_SHARE, overlap=overlap_share)


def annotation_complete(directory: Path, stem: str, detector: YuNet) -> bool:
    """False when the detector finds a face in the still that nobody annotated. Most such scenes have
    real people left unannotated in the background (mw_001: five faces, two annotated), which would make
    the truth wrong; leaving them out also hides the detector's own false positives on them."""
    faces = read_voc(directory / "annotations" / f"{stem}.xml")
    rgb = cv2.cvtColor(cv2.imread(str(directory / "images" / f"{stem}.jpg")), cv2.COLOR_BGR2RGB)
    found = detector.detect(rgb)
    return len(match_faces([f.box for f in faces], [d.box for d in found])) == len(found)


def _window(width: int, height: int, zoom: float) -> tuple[float, float]:
    """The largest 4:3 window that fits the scene, shrunk by `zoom` (>= 1)."""
    aspect = SIZE[0] / SIZE[1]
    w = min(width, height * aspect) / zoom
    return w, w / aspect


def plan_shots(directory: Path, stems: Sequence[str], kinds: Sequence[str] = ("pan", "zoom")) -> list[Shot]:
    """One shot per scene, alternating pan (left to right across a 1.3x zoomed window) and zoom (the
    whole scene -> 1.5x on its centre)."""
    shots = []
    for i, stem in enumerate(stems):
        image = directory / "images" / f"{stem}.jpg"
        faces = tuple(read_voc(directory / "annotations" / f"{stem}.xml"))
        height, width = cv2.imread(str(image), cv2.IMREAD_REDUCED_GRAYSCALE_2).shape[:2]
        width, height = width * 2, height * 2
        kind = kinds[i % len(kinds)]
        if kind == "pan":
            w, h = _window(width, height, 1.3)
            y = (height - h) / 2
            start, end = (0.0, y, w, h), (width - w, y, w, h)
        else:
            w0, h0 = _window(width, height, 1.0)
            w1, h1 = _window(width, height, 1.5)
            start = ((width - w0) / 2, (height - h0) / 2, w0, h0)
            end = ((width - w1) / 2, (height - h1) / 2, w1, h1)
        shots.append(Shot(image, faces, start, end))
    return shots


def _in_view(box: Sequence[float], width: int, height: int) -> Box | None:
    x, y, w, h = box
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < VISIBLE_SHARE * w * h:
        return None
    return round(x0), round(y0), round(x1 - x0), round(y1 - y0)


def render_clip(
    shots: Sequence[Shot], fps: float = 10.0, seconds_per_shot: float = 2.0, min_frames: int = 3
) -> Clip:
    """Every frame of every shot, and the truth: a person is one annotated face of one shot, counted when
    it is in view in at least `min_frames` frames."""
    per_shot = max(2, round(fps * seconds_per_shot))
    frames: list[np.ndarray] = []
    truth = Truth(fps)
    seen: dict[int, int] = {}
    labels: dict[int, str] = {}
    person = 0
    for shot in shots:
        scene = cv2.cvtColor(cv2.imread(str(shot.image)), cv2.COLOR_BGR2RGB)
        ids = list(range(person + 1, person + 1 + len(shot.faces)))
        person += len(shot.faces)
        for i in range(per_shot):
            a = i / (per_shot - 1)
            x, y, w, h = (s + (e - s) * a for s, e in zip(shot.start, shot.end, strict=True))
            sx, sy = SIZE[0] / w, SIZE[1] / h
            matrix = np.array([[sx, 0, -x * sx], [0, sy, -y * sy]], dtype=np.float64)
            frame = cv2.warpAffine(scene, matrix, SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
            frames.append(frame)
            row = []
            for pid, face in zip(ids, shot.faces, strict=True):
                fx, fy, fw, fh = face.box
                box = _in_view(((fx - x) * sx, (fy - y) * sy, fw * sx, fh * sy), *SIZE)
                if box is not None:
                    row.append(TrueFace(pid, face.label, box))
                    seen[pid] = seen.get(pid, 0) + 1
                    labels[pid] = face.label
            truth.frames.append(row)
    truth.people = {pid: labels[pid] for pid, n in sorted(seen.items()) if n >= min_frames}
    return Clip(frames, truth)


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def encode(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """RGB frames -> a video file; the container and codec follow the suffix (ENCODERS)."""
    args = ENCODERS[path.suffix.lstrip(".")]
    height, width = frames[0].shape[:2]
    cmd = [
        "ffmpeg", "-y", "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
        *args, str(path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in frames:
        proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait(timeout=300) != 0:
        raise RuntimeError(f"ffmpeg failed on {path.name}: {err[-500:]}")
    return path


@dataclass(frozen=True)
class TrackScore:
    true_people: int
    counted: int  # people the video path reports with a label (not `unknown`)
    tracks: int  # every track, `unknown` ones included
    found: int  # true people matched by at least one track
    id_switches: int  # times a true person's matched track id changed
    labels_right: int  # true people whose main track's voted label is their true label

    @property
    def count_error(self) -> float:
        return (self.counted - self.true_people) / self.true_people if self.true_people else 0.0

    @property
    def label_accuracy(self) -> float:
        return self.labels_right / self.true_people if self.true_people else 0.0

    def as_json(self) -> dict[str, float | int]:
        return {
            **self.__dict__,
            "count_error": round(self.count_error, 4),
            "label_accuracy": round(self.label_accuracy, 4),
        }


def score_tracks(truth: Truth, lines: Sequence[dict], people: Sequence[dict]) -> TrackScore:
    """The video path's answer (its frame lines and people) against the truth: per analysed frame, true
    boxes are matched to found boxes (match_faces); a true person's main track is the id matched most
    often."""
    matched: dict[int, list[int]] = {}
    for line in lines:
        true_faces = truth.frames[line["frame"]]
        found = [f for f in line["faces"] if f["id"] is not None]
        pairs = match_faces([t.box for t in true_faces], [tuple(f["box"]) for f in found])
        for ti, fi in pairs:
            matched.setdefault(true_faces[ti].person, []).append(found[fi]["id"])
    labels = {p["id"]: p["label"] for p in people}
    switches = found_people = right = 0
    for person, label in truth.people.items():
        ids = matched.get(person, [])
        if not ids:
            continue
        found_people += 1
        switches += sum(a != b for a, b in zip(ids, ids[1:], strict=False))
        main = max(set(ids), key=ids.count)
        right += labels.get(main) == label
    counted = sum(p["label"] != "unknown" for p in people)
    return TrackScore(len(truth.people), counted, len(people), found_people, switches, right)
