"""masklite/video.py, tracking.py, draw.py on real clips (bench/clips.py) and the shipped models."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.clips import annotation_complete, encode, score_tracks
from masklite.draw import DrawnFace, annotate, blur_faces
from masklite.tracking import ByteTracker, PersonVotes
from masklite.video import (
    AnnotatedWriter,
    Models,
    VideoError,
    VideoOptions,
    analyse_video,
    open_source,
    parse_source,
    probe,
)
from tests.video.conftest import FORMATS, HELD_OUT, MACWINWIN, Clips


def run(
    path: Path, models: Models, options: VideoOptions | None = None, writer: AnnotatedWriter | None = None
):
    lines: list[dict] = []
    with open_source(path) as source:
        options = options or VideoOptions()
        result = analyse_video(source, models, options, on_frame=lines.append, writer=writer)
    return result, lines


def ffprobe_frames(path: Path) -> tuple[str, int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    stream = json.loads(out)["streams"][0]
    return stream["codec_name"], int(stream["nb_read_frames"])


# ---------------------------------------------------------------- every container, the same people


def test_clip_scenes_are_complete(clips: Clips, video_models: Models) -> None:
    """The truth is only as good as the annotation: no face in these scenes was left unannotated."""
    for directory, stems in zip(clips.scene_dirs, (HELD_OUT, MACWINWIN), strict=True):
        for stem in stems:
            assert annotation_complete(directory, stem, video_models.detector), stem


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_finds_the_people_of_the_clip(clips: Clips, video_models: Models, fmt: str) -> None:
    result, lines = run(clips.files[fmt], video_models)
    truth = clips.clip.truth
    summary = result.summary
    assert summary["frames_read"] == len(clips.clip.frames) == summary["frames_analysed"] == len(lines)
    assert summary["fps_source"] == pytest.approx(clips.fps, rel=0.01)
    assert summary["people_total"] == len(result.people) == sum(summary["people"].values())
    score = score_tracks(truth, lines, result.people)
    # (bench/video.py reports these numbers; here: bounds the pipeline must not fall below on any codec)
    # nearly every true person is tracked, under one id, and counted close to the truth
    assert score.found >= score.true_people - 1, score
    assert score.id_switches <= 2, score
    assert abs(score.counted - score.true_people) <= 2, score
    assert score.label_accuracy >= 0.7, score
    # the per-frame lines: every face has its box inside the frame and a person label from the vote
    for line in lines:
        for face in line["faces"]:
            x, y, w, h = face["box"]
            assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
            assert face["person_label"] in (*video_models.card.labels, "unknown")


def test_people_have_times_votes_and_a_summary_that_adds_up(clips: Clips, video_models: Models) -> None:
    result, _ = run(clips.files["mp4"], video_models)
    for person in result.people:
        assert 0 <= person["first_s"] <= person["last_s"] <= result.summary["duration_s"]
        judged = sum(person["votes"].values())
        if judged < 3:
            assert person["label"] == "unknown"
        else:
            assert (
                person["label"] == max(person["votes"], key=person["votes"].get)
                or person["label"] == "unknown"
            )
    buckets = result.summary["compliance"]
    assert result.summary["bucket_s"] == 10.0  # a short clip: 10 s buckets
    assert len(buckets) == 1 and buckets[0]["people"] == result.summary["people_total"]
    judged = buckets[0].get("with_mask", 0) + buckets[0].get("without_mask", 0)
    assert buckets[0]["compliance"] == pytest.approx(buckets[0].get("with_mask", 0) / judged, abs=1e-4)
    assert result.summary["fps_processed"] > 0


def test_compliance_buckets_count_the_people_seen_in_each(clips: Clips, video_models: Models) -> None:
    result, lines = run(clips.files["mp4"], video_models, VideoOptions(bucket_s=2.0))
    labels = {p["id"]: p["label"] for p in result.people}
    rows = result.summary["compliance"]
    assert [r["start_s"] for r in rows] == [0.0, 2.0, 4.0] and result.summary["bucket_s"] == 2.0
    for row in rows:
        ids = {
            f["id"]
            for line in lines
            if row["start_s"] <= line["t_s"] < row["start_s"] + 2
            for f in line["faces"]
        }
        ids.discard(None)
        assert row["people"] == len(ids)
        for label in ("with_mask", "without_mask", "unknown"):
            assert row[label] == sum(labels[i] == label for i in ids)
        judged = row["with_mask"] + row["without_mask"]
        assert row["compliance"] == (round(row["with_mask"] / judged, 4) if judged else None)


def test_stride_analyses_every_nth_frame_and_keeps_the_tracks(clips: Clips, video_models: Models) -> None:
    result, lines = run(clips.files["mp4"], video_models, VideoOptions(stride=3, min_votes=2))
    n = len(clips.clip.frames)
    assert result.summary["frames_read"] == n
    assert result.summary["frames_analysed"] == len(lines) == -(-n // 3)
    assert [line["frame"] for line in lines] == list(range(0, n, 3))
    score = score_tracks(clips.clip.truth, lines, result.people)
    assert score.found >= score.true_people - 1, score


def test_limits_stop_reading(clips: Clips, video_models: Models) -> None:
    result, lines = run(clips.files["mp4"], video_models, VideoOptions(max_frames=7))
    assert result.summary["frames_read"] >= 7 and len(lines) == 7 and result.summary["stopped_at_limit"]
    result, lines = run(clips.files["mp4"], video_models, VideoOptions(duration_s=2.0))
    assert lines[-1]["t_s"] <= 2.0 and len(lines) == 21


# ---------------------------------------------------------------- annotated output


def test_annotated_output_is_h264_with_every_frame(
    clips: Clips, video_models: Models, tmp_path: Path
) -> None:
    out = tmp_path / "annotated.mp4"
    with AnnotatedWriter(out, clips.fps, 640, 480) as writer:
        result, _ = run(clips.files["mp4"], video_models, VideoOptions(stride=2), writer)
    assert result.summary["video_codec"] == "h264"
    assert ffprobe_frames(out) == ("h264", len(clips.clip.frames))


def test_blur_pixelates_every_face_in_the_output(clips: Clips, video_models: Models, tmp_path: Path) -> None:
    plain, blurred = tmp_path / "plain.mp4", tmp_path / "blurred.mp4"
    for path, blur in ((plain, False), (blurred, True)):
        with AnnotatedWriter(path, clips.fps, 640, 480) as writer:
            _, lines = run(clips.files["avi"], video_models, VideoOptions(blur=blur), writer)
    with open_source(plain) as a, open_source(blurred) as b:
        frames = list(zip(a, b, strict=True))
    checked = 0
    for line in lines:
        (_, _, plain_bgr), (_, _, blur_bgr) = frames[line["frame"]]
        diff = np.abs(plain_bgr.astype(int) - blur_bgr.astype(int)).mean(axis=2)
        faces = np.zeros(diff.shape, bool)
        for face in line["faces"]:
            x, y, w, h = face["box"]
            faces[max(0, y - h // 2) : y + h + h // 2, max(0, x - w // 2) : x + w + w // 2] = True
        for face in line["faces"]:
            x, y, w, h = face["box"]
            if min(w, h) < 40:
                continue
            inner = diff[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
            # the face changed a lot; far from every face only the encoder's noise differs
            assert inner.mean() > max(4.0, 4 * diff[~faces].mean()), (line["frame"], face["box"])
            checked += 1
    assert checked >= 10


def test_draw_and_blur_on_an_image() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    blurred = blur_faces(img.copy(), [(40, 30, 64, 64)], grow=0)
    assert len(np.unique(blurred[30:94, 40:104].reshape(-1, 3), axis=0)) <= 64  # 8x8 cells
    assert np.array_equal(blurred[:30], img[:30])  # outside the box: untouched
    drawn = annotate(img.copy(), [DrawnFace((40, 30, 64, 64), "with_mask", 7)])
    assert (drawn[30, 40:104] == (46, 204, 113)).all()  # the box's top edge, in the mask colour
    assert not np.array_equal(drawn[35:45, 40:80], img[35:45, 40:80])  # "#7 with_mask" label drawn


# ---------------------------------------------------------------- tracker and vote


def test_bytetrack_keeps_ids_on_moving_boxes_and_forgets_lost_ones() -> None:
    tracker = ByteTracker(fps=10)
    ids = [
        tracker.update([(10 + 4 * i, 20, 50, 60), (300 - 4 * i, 100, 50, 60)], [0.9, 0.9]) for i in range(10)
    ]
    assert len({tuple(i) for i in ids[1:]}) == 1 and None not in ids[-1]
    for _ in range(15):  # 1.5 s without the face: longer than LOST_AFTER_S
        tracker.update([], [])
    assert tracker.update([(50, 20, 50, 60)], [0.9]) == [None]  # a new face: confirmed on its 2nd frame
    again = tracker.update([(52, 20, 50, 60)], [0.9])
    assert again[0] is not None and again[0] not in ids[-1]


def test_votes_need_enough_judged_frames_and_a_majority() -> None:
    votes = PersonVotes(min_votes=3)
    for t, label in enumerate(["with_mask", "unknown", "with_mask"]):
        votes.add(1, label, float(t))
    assert votes.label(1) == "unknown"  # 2 judged frames; `unknown` frames do not vote
    votes.add(1, "without_mask", 3.0)
    assert votes.label(1) == "with_mask"
    votes.add(1, "without_mask", 4.0)
    assert votes.label(1) == "unknown"  # a tie
    (person,) = votes.people()
    assert (person.first_s, person.last_s, person.votes) == (0.0, 4.0, {"with_mask": 2, "without_mask": 2})


# ---------------------------------------------------------------- bad input


def test_probe_reads_every_format(clips: Clips) -> None:
    for fmt, path in clips.files.items():
        info = probe(path)
        assert (info.width, info.height, info.frames) == (640, 480, len(clips.clip.frames)), fmt
        assert info.duration_s == pytest.approx(len(clips.clip.frames) / clips.fps, abs=0.15)


def test_probe_refuses_what_is_not_a_whole_video(clips: Clips, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 100)
    with pytest.raises(VideoError) as err:
        probe(text)
    assert err.value.code == "not_video"
    data = clips.files["mp4"].read_bytes()
    for name, cut in (
        ("head.mp4", data[: len(data) // 3]),
        ("tail.avi", clips.files["avi"].read_bytes()[:-200_000]),
    ):
        path = tmp_path / name
        path.write_bytes(cut)
        with pytest.raises(VideoError) as err:
            probe(path)
        assert err.value.code in ("truncated", "not_video"), name
    with pytest.raises(VideoError) as err:
        probe(clips.files["webm"], max_duration_s=2.0)
    assert err.value.code == "too_long"
    image = tmp_path / "one.png"
    encode([clips.clip.frames[0]], tmp_path / "one.gif", 10)
    image.write_bytes((tmp_path / "one.gif").read_bytes())
    assert probe(image).frames == 1  # a one-frame GIF is a video of one frame, not an error


def test_sources_refuse_missing_files_and_parse_webcams(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as err:
        open_source(tmp_path / "absent.mp4")
    assert err.value.code == "not_found"
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 64)
    with pytest.raises(VideoError), open_source(garbage) as source:
        analyse_video(source, None, VideoOptions())  # type: ignore[arg-type]
    assert parse_source("0") == 0 and parse_source("rtsp://h/x") == "rtsp://h/x"
    if not Path("/dev/video7").exists():  # a webcam index that is not there: a clear error, not a hang
        with pytest.raises(VideoError) as err:
            open_source("7")
        assert err.value.code == "no_camera"


# ---------------------------------------------------------------- a real RTSP stream, in-process


def test_rtsp_stream_is_read_at_its_own_rate_without_growing_lag(clips: Clips, video_models: Models) -> None:
    from bench.video import measure_stream

    stream = measure_stream(clips.files["mp4"], video_models, seconds=6.0)
    # 10 fps for 6 s (+ a few frames buffered while opening); every frame handed out analysed or dropped
    assert 55 <= stream["frames_read"] <= 80, stream
    assert stream["frames_analysed"] + stream["frames_dropped"] <= stream["frames_read"]
    assert stream["frames_analysed"] >= 20, stream
    assert stream["lag_growth_ms"] < 300, stream  # a reader falling behind would grow by seconds
