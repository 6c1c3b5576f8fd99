"""Benchmark library: the CI ratio checks can fail, the in-process runner's schema on the real models."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.images import load_scenes, make_target_image
from bench.inprocess import BenchConfig, run_benchmark
from bench.report import format_result, save_chart
from bench.stats import conditions, conditions_line, cpu_counters, own_cpu_ticks, snapshot
from bench.targets import ci_noise_reason, ci_ratio_failures, evaluate_targets, format_checks
from masklite.faces import iou, match_boxes


def _clf(per_face: float) -> dict[str, Any]:
    return {
        "batch": 1,
        "latency_ms": {"p50": per_face},
        "per_face_ms": {"p50": per_face},
        "cpu_per_face_ms": {"p50": per_face},
    }


def synthetic_record(int8_ms: float = 2.0, float32_ms: float = 4.0, http_ms: float = 24.0) -> dict[str, Any]:
    """The smallest result the ratio checks read: classifier p50 per precision, HTTP vs in-process."""
    return {
        "models": {
            "float32": {"threads": {"1": {"classifier": {"batch1": _clf(float32_ms)}}}},
            "int8": {"threads": {"1": {"classifier": {"batch1": _clf(int8_ms)}}}},
        },
        "http": {
            "models": {
                "int8": {
                    "inprocess_ms": {"p50": 20.0},
                    "http_ms": {"p50": http_ms},
                    "server_total_ms": {"p50": 21.0},
                    "ratio_p50": http_ms / 20.0,
                }
            }
        },
    }


def test_ratio_checks_pass_on_a_good_record() -> None:
    assert ci_ratio_failures(synthetic_record()) == []


def test_ratio_check_fails_when_int8_is_slower() -> None:
    failures = ci_ratio_failures(synthetic_record(int8_ms=5.0, float32_ms=4.0))
    assert len(failures) == 1
    assert "int8 only 0.80x faster than float32" in failures[0]


def test_ratio_check_fails_when_int8_is_only_1_2x_faster() -> None:
    # a quiet machine measures 1.97x; 1.2x means int8 lost its fast kernels
    failures = ci_ratio_failures(synthetic_record(int8_ms=2.0, float32_ms=2.4))
    assert len(failures) == 1 and "1.20x" in failures[0] and ">= 1.5x" in failures[0]
    assert ci_ratio_failures(synthetic_record(int8_ms=2.0, float32_ms=3.2)) == []  # 1.6x


def test_noisy_result_skips_the_ratio_verdict() -> None:
    record = synthetic_record(int8_ms=2.0, float32_ms=2.4)
    assert ci_noise_reason(record) is None
    record["conditions"] = conditions(
        {"load_avg_1m": 3.1, "cpu": {"total": 1000, "steal": 10}},
        {"load_avg_1m": 2.5, "cpu": {"total": 1200, "steal": 30}},
        cores=2,
    )
    assert record["conditions"]["noisy"] and record["conditions"]["steal_pct"] == 10.0
    reason = ci_noise_reason(record)
    assert reason is not None and "noisy: do not compare" in reason
    assert "NOISY: DO NOT COMPARE" in format_checks(evaluate_targets(record), noisy=True)


def test_conditions_quiet_and_from_proc_stat() -> None:
    quiet = conditions({"load_avg_1m": 0.2, "cpu": None}, {"load_avg_1m": 0.9, "cpu": None}, cores=2)
    assert quiet["noisy"] is False and quiet["load_per_core_max"] == 0.45 and quiet["steal_pct"] is None
    loud = conditions({"load_avg_1m": 0.2, "cpu": None}, {"load_avg_1m": 1.1, "cpu": None}, cores=2)
    assert loud["noisy"] is True and loud["note"] == "noisy: do not compare"
    counters = cpu_counters("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n")
    assert counters == {"total": 1000, "steal": 40, "busy": 150}
    live = snapshot()
    assert live["load_avg_1m"] is not None and live["cpu"]["total"] > 0


def test_the_benchmarks_own_load_is_not_noise() -> None:
    """A load average raised by the benchmark itself (its server, its load generator) is not noisy;
    the same ticks spent by another process are."""
    before = {"load_avg_1m": 0.1, "cpu": {"total": 1000, "steal": 0, "busy": 100}, "own_ticks": 50}
    own = {"load_avg_1m": 1.9, "cpu": {"total": 2000, "steal": 0, "busy": 1000}, "own_ticks": 900}
    other = {"load_avg_1m": 1.9, "cpu": {"total": 2000, "steal": 0, "busy": 1000}, "own_ticks": 100}
    quiet, loud = conditions(before, own, cores=2), conditions(before, other, cores=2)
    assert quiet["noisy"] is False and quiet["other_cpu_pct"] == 5.0
    assert loud["noisy"] is True and loud["other_cpu_pct"] == 85.0
    assert "other processes used 85.0 %" in conditions_line(loud)


def test_own_cpu_ticks_counts_child_processes() -> None:
    """A child that spins for a second shows up in this process tree's ticks (and so not as noise)."""
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"
    start = own_cpu_ticks()
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)
        assert child.pid and own_cpu_ticks() is not None
    finally:
        child.wait(timeout=60)
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    assert start is not None and own_cpu_ticks() - start >= 0.8 * ticks_per_s  # reaped: in cutime


def test_ratio_check_fails_when_http_is_over_twice_in_process() -> None:
    failures = ci_ratio_failures(synthetic_record(http_ms=41.0))
    assert len(failures) == 1
    assert "HTTP round trip 2.05x" in failures[0]
    assert ci_ratio_failures(synthetic_record(http_ms=39.0)) == []


def test_ratio_check_fails_when_numbers_are_missing() -> None:
    record = synthetic_record()
    del record["http"]
    assert any("no HTTP" in f for f in ci_ratio_failures(record))
    record = synthetic_record()
    record["models"]["int8"]["threads"]["1"]["classifier"] = {}
    assert any("missing" in f for f in ci_ratio_failures(record))


def test_absolute_times_never_fail_ci() -> None:
    # 100x slower machine, same ratios: CI passes; the printed targets say MISSED
    slow = synthetic_record(int8_ms=200.0, float32_ms=400.0, http_ms=2400.0)
    slow["http"]["models"]["int8"]["inprocess_ms"]["p50"] = 2000.0
    slow["http"]["models"]["int8"]["ratio_p50"] = 1.2
    assert ci_ratio_failures(slow) == []
    text = format_checks(evaluate_targets(slow))
    assert "MISSED" in text and "int8 classifier CPU ms/face" in text


def test_iou_and_matching() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    # one detection cannot match two annotated faces
    assert match_boxes([(0, 0, 10, 10), (1, 1, 10, 10)], [(0, 0, 10, 10)], 0.3) == [(0, 0)]


def test_target_image_is_640x480_with_faces(scenes_dir: Path) -> None:
    import io

    from PIL import Image

    target = make_target_image(load_scenes(scenes_dir))
    assert target is not None
    assert Image.open(io.BytesIO(target.data)).size == (640, 480)
    assert 2 <= len(target.truth) <= 4
    for t in target.truth:
        x, y, w, h = t.box
        assert x >= 0 and y >= 0 and x + w <= 641 and y + h <= 481


def test_runner_schema_on_real_models(
    models_dir: Path, scenes_dir: Path, detector_path: Path, tmp_path: Path
) -> None:
    result = run_benchmark(
        BenchConfig(
            models_dir=models_dir,
            threads=[1],
            batch_sizes=[1, 2],
            runs=3,
            warmup=1,
            pipeline_runs=2,
            scene_repeats=1,
            scenes_dir=scenes_dir,
            scene_limit=3,
            detector_path=detector_path,
        )
    )
    assert set(result["models"]) >= {"float32", "int8"}
    for precision, entry in result["models"].items():
        t1 = entry["threads"]["1"]
        assert entry["bytes"] > 0
        assert t1["classifier"]["batch1"]["latency_ms"]["n"] == 3
        assert t1["classifier"]["batch2"]["per_face_ms"]["p50"] > 0
        stages = t1["target"]["stages_ms"]
        assert set(stages) == {"decode", "detect", "classify", "total", "cpu"}
        assert stages["total"]["p50"] >= stages["detect"]["p50"]
        assert t1["target"]["faces"] >= 2, "the 640x480 target has 4 annotated faces"
        assert t1["images"]["images"] == 3
        scenes = entry["scenes"]
        assert scenes["annotated_faces"] > 0 and 0 < scenes["recall"] <= 1, precision
    assert "int8_vs_float32" in result["speedup"]
    assert result["memory"]["peak_rss_mb"] > 0
    assert result["machine"]["nproc"] >= 1
    assert "Classifier latency" in format_result(result)
    png = save_chart(result, tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runner_rejects_unknown_model(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="not in the card"):
        run_benchmark(BenchConfig(models_dir=models_dir, precisions=["fp4"]))


def test_targets_read_a_full_result_copy() -> None:
    record = copy.deepcopy(synthetic_record())
    names = [c.name for c in evaluate_targets(record)]
    assert any("speed-up" in n for n in names)


def test_ratio_floor_follows_the_measured_cpu() -> None:
    """AVX-512 CPUs run XNNPACK's float32 kernels wider: the floor there is 1.3x, elsewhere 1.5x; 1.2x fails
    on both."""
    avx2, avx512 = ["avx", "avx2", "fma"], ["avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    for flags, ms, ok in (
        (avx512, 2.7, True),  # 1.35x, as measured quiet on an AVX-512 Xeon
        (avx2, 2.7, False),
        (avx512, 2.4, False),  # 1.2x
        (avx2, 3.2, True),  # 1.6x
    ):
        record = synthetic_record(int8_ms=2.0, float32_ms=ms) | {"machine": {"cpu_flags": flags}}
        assert (ci_ratio_failures(record) == []) is ok, (flags, ms)
