"""Video fixtures: clips made from the shared annotated scenes (bench/clips.py) in every container and
codec the video path accepts, once per session, in a temporary folder (nothing is committed), and the
shipped models loaded once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.clips import Clip, encode, ffmpeg_available, plan_shots, render_clip
from masklite.video import Models, load_models
from tests.conftest import skip_or_fail

FPS = 10.0
FORMATS = ("mp4", "webm", "avi", "gif")
# scenes whose every face is annotated (bench.clips.annotation_complete; test_clip_scenes_are_complete),
# with both labels: scene_02 3 masked, scene_07 masked and unmasked, mw_010 2 masked, mw_019 4 unmasked
HELD_OUT = ["scene_02", "scene_07"]
MACWINWIN = ["mw_010", "mw_019"]


@dataclass(frozen=True)
class Clips:
    clip: Clip
    files: dict[str, Path]  # format -> file
    fps: float
    scene_dirs: tuple[Path, Path]


def _datasets() -> tuple[Path, Path]:
    scenes = Path(os.environ.get("MASKLITE_SCENES_DIR") or "")
    macwinwin = Path(os.environ.get("MASKLITE_DATASETS_DIR") or "") / "macwinwin-scenes"
    for path in (scenes, macwinwin):
        if not (path / "annotations").is_dir():
            skip_or_fail(f"no annotated scenes at {path} (MASKLITE_SCENES_DIR / MASKLITE_DATASETS_DIR)")
    return scenes, macwinwin


@pytest.fixture(scope="session")
def video_models(models_dir: Path) -> Models:
    return load_models(models_dir, "int8", threads=1)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    """A 6 s, 640x480, 10 fps clip: a pan and a zoom across two held-out scenes (scenes-sample), then
    cuts to a pan and a zoom of two macwinwin scenes; encoded as H.264 mp4, VP9 webm, MJPEG avi, GIF."""
    if not ffmpeg_available():
        skip_or_fail("ffmpeg is not on PATH (Debian: apt-get install ffmpeg)")
    scenes, macwinwin = _datasets()
    shots = plan_shots(scenes, HELD_OUT) + plan_shots(macwinwin, MACWINWIN)
    clip = render_clip(shots, fps=FPS, seconds_per_shot=1.5)
    folder = tmp_path_factory.mktemp("clips")
    files = {fmt: encode(clip.frames, folder / f"clip.{fmt}", FPS) for fmt in FORMATS}
    return Clips(clip, files, FPS, (scenes, macwinwin))
