"""The one-core sections of `make bench` on the real models and scenes: they run, go through the pipeline,
and say what the issues ask (no timing is judged here)."""

from __future__ import annotations

from pathlib import Path

from bench.detectors import compare_detectors
from bench.phone import phone_costs
from bench.sections import SectionOptions
from bench.stage_timing import format_costs, main, stage_costs


def test_detector_and_phone_sections(models_dir: Path, scenes_dir: Path, detector_path: Path) -> None:
    det = compare_detectors(SectionOptions(models_dir, detector_path, 2, scenes_dir, scene_limit=6))
    assert det["baseline"] == "opencv" and det["candidate"] == "litert"
    assert det["speedup"] is not None and "noisy" in det["conditions"]
    assert det["compare"]["iou90_share"] >= 0.95 and det["compare"]["same_label_share"] >= 0.99
    phone = phone_costs(SectionOptions(models_dir, detector_path, 1, scenes_dir, scene_limit=2))
    assert phone["photos"]["12mp"]["decoded"][0] * 4 >= phone["photos"]["12mp"]["size"][0]
    assert phone["ratio"] is not None and 0 <= phone["same_share"] <= 1
    # the reduced decode keeps every face and its label (boxes may move as much as YuNet's own floor)
    assert phone["same_label_share"] >= 0.9 and 0 <= phone["same_share_floor"] <= 1


def test_stage_timing_passes_the_detect_size_to_the_pipeline(
    models_dir: Path, scenes_dir: Path, detector_path: Path
) -> None:
    """A smaller detect size (the pipeline's detect_size, no patched global) finds no more faces."""
    costs = stage_costs(SectionOptions(models_dir, detector_path, 1, scenes_dir, scene_limit=4), [160, 640])
    small, default = costs["sides"]["160"], costs["sides"]["640"]
    assert small["faces_on_target"] <= default["faces_on_target"] and default["faces_on_target"] >= 2
    for row in (small, default):
        assert row["decode_cpu_ms"] > 0 and row["detect_cpu_ms"] > 0
        for m in row["models"].values():
            assert m["pipeline_cpu_ms"] > 0 and m["classify_cpu_ms"] >= 0
            assert 0 <= m["scenes_recall"] <= 1
    recall = {side: row["models"]["int8"]["scenes_recall"] for side, row in costs["sides"].items()}
    assert recall["160"] <= recall["640"]
    assert "req/s@2cores" in format_costs(costs)


def test_sections_report_missing_scenes(models_dir: Path, tmp_path: Path) -> None:
    """No scenes: an error result and exit 1, not a crash."""
    options = SectionOptions(models_dir, runs=1, scenes_dir=tmp_path)
    assert "error" in stage_costs(options, [640]) and "error" in phone_costs(options)
    assert main(["--scenes-dir", str(tmp_path), "--runs", "1", "--sides", "640"]) == 1
