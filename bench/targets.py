"""The performance targets (issues #3/#5/#14) checked against a result, and the CI ratio checks.

Targets are printed (met / missed), never asserted: absolute times depend on the machine, and they only
count when the result is not marked noisy (stats.conditions). The CI checks are RATIOS measured on one
machine in one run, so they hold anywhere the code is right: int8 at least 1.5x faster than float32 per
face (CPU time, the two interleaved), and the HTTP round trip at most 2x the same pipeline in-process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.stats import NOISY_NOTE

CI_MAX_HTTP_RATIO = 2.0
# float32 / int8 CPU ms per face (p50, interleaved). Quiet 2-core machines of the CI kind measured:
# AMD EPYC (AVX2, no AVX-512): 2.52 / 1.28 = 1.97x, so 1.5x leaves room for noise and still catches int8
# falling off XNNPACK's int8 kernels. On an Intel Xeon with AVX-512 (+ VNNI, AMX) XNNPACK's float32 kernels
# use AVX-512 and the gap narrows: 1.34-1.48x quiet, for the round-1 models and the issue #12 models alike
# (benchmarks/history.jsonl, BENCHMARKS.md). There 1.3x is the floor: int8 as slow as float32, or 1.2x,
# still fails.
CI_MIN_INT8_SPEEDUP = 1.5
CI_MIN_INT8_SPEEDUP_AVX512 = 1.3


def min_int8_speedup(result: dict[str, Any]) -> float:
    """The CI floor for the CPU the result was measured on (its recorded SIMD flags)."""
    flags = dig(result, "machine", "cpu_flags") or []
    return CI_MIN_INT8_SPEEDUP_AVX512 if "avx512f" in flags else CI_MIN_INT8_SPEEDUP


CI_CLASSIFIER_KEY = "cpu_per_face_ms"
# issue #14: the new detector against the OpenCV one, same classifier and thresholds
MAX_RECALL_DROP = 0.01
MIN_IOU90_SHARE = 0.95
MIN_SAME_LABEL_SHARE = 0.99
MAX_PHONE_RATIO = 2.5


@dataclass
class Check:
    name: str
    target: str
    measured: float | None
    met: bool | None  # None: not measured in this result
    note: str = ""
    info: bool = False  # reported, no pass/fail

    def line(self) -> str:
        state = (
            "INFO  "
            if self.info and self.measured is not None
            else {True: "MET   ", False: "MISSED", None: "n/a   "}[self.met]
        )
        value = "-" if self.measured is None else f"{self.measured:.3g}"
        return f"  [{state}] {self.name:<50} target {self.target:<12} measured {value} {self.note}".rstrip()


def dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) else None


def _check(name: str, target: str, value: Any, ok: Any, note: str = "") -> Check:
    v = _num(value)
    return Check(name, target, v, None if v is None else bool(ok(v)), note)


def classifier_p50(
    result: dict[str, Any],
    precision: str,
    threads: str = "1",
    batch: str = "batch1",
    key: str = "per_face_ms",
) -> Any:
    return dig(result, "models", precision, "threads", threads, "classifier", batch, key, "p50")


def _limit(name: str, op: str, limit: float, unit: str, value: Any, note: str = "") -> Check:
    """A target `value op limit` ("<=" or ">="); unit "%" shows the limit as a percentage."""
    shown = f"{limit:.0%}" if unit == "%" else f"{limit:g}{unit}"
    ok = (lambda v: v <= limit) if op == "<=" else (lambda v: v >= limit)
    return _check(name, f"{op} {shown}", value, ok, note)


def _info(name: str, value: Any, note: str = "") -> Check:
    """Reported, never met or missed."""
    check = _check(name, "report", value, bool, note)
    check.info = True
    return check


def evaluate_targets(result: dict[str, Any]) -> list[Check]:
    """Issue #3/#5/#14 targets. The deployed service runs 1-thread interpreters: threads=1 is the reference.
    CPU ms: 1 thread per network (LiteRT, or the detector's runtime) + 1 OpenCV thread, on the 640x480
    target (4 faces)."""
    i8 = classifier_p50(result, "int8", key=CI_CLASSIFIER_KEY)
    f32 = classifier_p50(result, "float32", key=CI_CLASSIFIER_KEY)
    speed = f32 / i8 if _num(i8) and _num(f32) else None
    stages = _default_side_stages(result)
    c1, c8 = _default_load_run(result, 1), _default_load_run(result, 8)
    client_p50 = (
        dig(c1, "latency_ms", "p50") if c1 else dig(result, "http", "models", "int8", "http_ms", "p50")
    )
    load_note = f"({c8['label']}; server {c8.get('server_cpu_ms_per_request')} ms CPU/request)" if c8 else ""
    det = result.get("detectors") or {}
    drop = dig(det, "compare", "recall_drop")
    phone = result.get("phone") or {}
    rss = [
        m.get("peak_rss_mb")
        for s in (result.get("servers") or {}).values()
        for m in (s.get("memory") or {}).values()
        if m.get("peak_rss_mb") is not None
    ]
    http_int8 = dig(result, "http", "models", "int8") or {}
    checks = [
        _limit("int8 classifier CPU ms/face (p50, 1 thread, batch 1)", "<=", 1.5, " ms", i8),
        _limit(
            "int8 speed-up over float32 (CPU per face, interleaved)", ">=", CI_MIN_INT8_SPEEDUP, "x", speed
        ),
        _limit("detector CPU ms, 640x480 target", "<=", 5, " ms", dig(stages, "detect_cpu_ms")),
        _limit(
            "pipeline CPU ms (decode+detect+classify, int8), 640x480",
            "<=",
            12,
            " ms",
            dig(stages, "models", "int8", "pipeline_cpu_ms"),
        ),
        _limit("/v1/predict p50 at 1 client (client side), int8", "<=", 12, " ms", client_p50),
        _limit(
            "requests/s at 8 clients, shipped default server", ">=", 120, "", dig(c8, "ok_per_s"), load_note
        ),
        _limit(
            "new vs OpenCV detector: recall drop on scenes (pt)",
            "<=",
            MAX_RECALL_DROP * 100,
            " pt",
            None if drop is None else drop * 100,
        ),
        _limit(
            "new vs OpenCV detector: faces with box IoU >= 0.9",
            ">=",
            MIN_IOU90_SHARE,
            "%",
            dig(det, "compare", "iou90_share"),
        ),
        _limit(
            "new vs OpenCV detector: same label",
            ">=",
            MIN_SAME_LABEL_SHARE,
            "%",
            dig(det, "compare", "same_label_share"),
        ),
        _info("detector speed-up, new / OpenCV (CPU, target)", dig(det, "speedup")),
        _limit(
            "12 MP photo / same photo at 1024 px (server CPU)", "<=", MAX_PHONE_RATIO, "x", phone.get("ratio")
        ),
        _check(
            "12 MP upscaled scenes: same boxes (IoU>=0.9) and labels",
            "100%",
            phone.get("same_share"),
            lambda v: v >= 1.0,
        ),
        _info(
            "12 MP: the detector's own floor for that (two equally valid copies)",
            phone.get("same_share_floor"),
        ),
        _info("12 MP upscaled scenes: same face (IoU>=0.5) and label", phone.get("same_label_share")),
        _limit(
            "/v1/predict server-side p50, int8, 640x480",
            "<=",
            20,
            " ms",
            dig(http_int8, "server_total_ms", "p50"),
        ),
        _limit("HTTP round trip / in-process (p50, int8)", "<=", 1.3, "x", http_int8.get("ratio_p50")),
        _limit("server peak RSS per worker", "<=", 300, " MB", max(rss) if rss else None),
    ]
    for side, row in ((result.get("stages") or {}).get("sides") or {}).items():
        recall = dig(row, "models", "int8", "scenes_recall")
        checks.append(_info(f"scenes face recall at detect size {side}", recall, "(IoU>=0.3)"))
    return checks


def _default_side_stages(result: dict[str, Any]) -> dict[str, Any] | None:
    stages = result.get("stages") or {}
    return dig(stages, "sides", str(stages.get("default_side", 640)))


def _default_load_run(result: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    """The load run at this concurrency on the shipped default server setup (the first setup swept)."""
    runs = [r for r in dig(result, "load", "runs") or [] if r.get("concurrency") == concurrency]
    default = [r for r in runs if r.get("default_setup")]
    return (default or runs or [None])[0]


def ci_ratio_failures(result: dict[str, Any]) -> list[str]:
    """The only things CI fails on besides errors. Missing numbers are failures too (the job broke)."""
    failures = []
    models = result.get("models") or {}
    floor = min_int8_speedup(result)
    if "int8" in models and "float32" in models:
        for threads in sorted(
            set(dig(models, "int8", "threads") or {}) & set(dig(models, "float32", "threads") or {})
        ):
            # CPU time, not wall time: on a shared machine preemption would decide the comparison
            i8 = _num(classifier_p50(result, "int8", threads, key=CI_CLASSIFIER_KEY))
            f32 = _num(classifier_p50(result, "float32", threads, key=CI_CLASSIFIER_KEY))
            if i8 is None or f32 is None or i8 <= 0:
                failures.append(f"classifier p50 missing for threads={threads}")
            elif f32 / i8 < floor:
                failures.append(
                    f"int8 only {f32 / i8:.2f}x faster than float32 (needs >= {floor}x on this CPU), "
                    f"threads={threads}: {i8:.3f} ms vs {f32:.3f} ms CPU per face (p50)"
                )
    http = dig(result, "http", "models") or {}
    if not http:
        failures.append("no HTTP round-trip numbers in the result")
    for precision, h in http.items():
        ratio = _num(h.get("ratio_p50"))
        if ratio is None:
            failures.append(f"HTTP/in-process ratio missing for {precision}")
        elif ratio > CI_MAX_HTTP_RATIO:
            failures.append(
                f"HTTP round trip {ratio:.2f}x the in-process pipeline for {precision} "
                f"(limit {CI_MAX_HTTP_RATIO}x): {h['http_ms']['p50']:.1f} ms "
                f"vs {h['inprocess_ms']['p50']:.1f} ms"
            )
    return failures


def ci_noise_reason(result: dict[str, Any]) -> str | None:
    """Why the CI ratio verdict must be skipped (a noisy machine), or None."""
    cond = result.get("conditions") or {}
    if cond.get("noisy"):
        return (
            f"{NOISY_NOTE}: load avg 1m {cond.get('load_avg_1m_before')} -> {cond.get('load_avg_1m_after')} "
            f"on {cond.get('cores')} cores"
        )
    return None


def format_checks(checks: list[Check], noisy: bool = False) -> str:
    head = "Targets (issues #3/#5/#14)" + (f" -- {NOISY_NOTE.upper()}" if noisy else "") + ":\n"
    return head + "\n".join(c.line() for c in checks)


def checks_as_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
