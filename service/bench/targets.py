"""The performance targets of issues #3/#5 checked against a result, and the CI ratio checks.

Targets are printed (met / missed), never asserted: absolute times depend on the machine. The CI checks
are RATIOS measured on one machine in one run, so they hold anywhere the code is right:
int8 not slower than float32, and the HTTP round trip at most 2x the same pipeline in-process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CI_MAX_HTTP_RATIO = 2.0
# int8 / float32 CPU ms per face (p50). Not 1.0: on x86 without VNNI (this 2-core Zen 3) XNNPACK runs the
# int8 MobileNetV2 at the same speed as float32 (3.4-3.6 ms CPU each), so a strict 1.0 would flip on noise.
# 10% still catches the regressions that matter (int8 falling off XNNPACK is ~2.7x slower).
CI_MAX_INT8_OVER_FLOAT32 = 1.10
CI_CLASSIFIER_KEY = "cpu_per_face_ms"


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


def evaluate_targets(result: dict[str, Any]) -> list[Check]:
    """Issue #3/#5 targets. The deployed service runs 1-thread interpreters, so threads=1 is the reference."""
    checks = []
    i8, f32 = classifier_p50(result, "int8"), classifier_p50(result, "float32")
    checks.append(
        _check("int8 classifier ms/face (p50, 1 thread, batch 1)", "<= 1.5 ms", i8, lambda v: v <= 1.5)
    )
    for precision in result.get("models") or {}:
        if precision not in ("int8", "float32"):  # e.g. the micro model: would it meet the per-face target?
            other = classifier_p50(result, precision)
            checks.append(
                _check(
                    f"{precision} classifier ms/face (p50, 1 thread, batch 1)",
                    "<= 1.5 ms",
                    other,
                    lambda v: v <= 1.5,
                )
            )
    speed = f32 / i8 if _num(i8) and _num(f32) else None
    checks.append(_check("int8 speedup over float32 (classifier p50)", ">= 1.8x", speed, lambda v: v >= 1.8))
    server = dig(result, "http", "models", "int8", "server_total_ms", "p50")
    checks.append(_check("/v1/predict server-side p50, int8, 640x480", "<= 20 ms", server, lambda v: v <= 20))
    ratio = dig(result, "http", "models", "int8", "ratio_p50")
    checks.append(_check("HTTP round trip / in-process (p50, int8)", "<= 1.3x", ratio, lambda v: v <= 1.3))
    c8 = [r for r in dig(result, "load", "runs") or [] if r.get("concurrency") == 8]
    best = max(c8, key=lambda r: r.get("ok_per_s", 0), default=None)
    checks.append(
        _check(
            "requests/s at concurrency 8 (best server setup)",
            ">= 100",
            best.get("ok_per_s") if best else None,
            lambda v: v >= 100,
            f"({best['label']})" if best else "",
        )
    )
    bound = max(c8, key=lambda r: r.get("cpu_bound_req_per_s") or 0, default=None)
    if bound is not None and bound.get("cpu_bound_req_per_s"):
        check = _check(
            "req/s the server CPU cost allows on all cores, c=8",
            ">= 100",
            bound["cpu_bound_req_per_s"],
            lambda v: v >= 100,
            f"({bound['label']}: {bound.get('server_cpu_ms_per_request')} ms CPU/request)",
        )
        check.info = True
        checks.append(check)
    rss = [
        m.get("peak_rss_mb")
        for s in (result.get("servers") or {}).values()
        for m in (s.get("memory") or {}).values()
        if m.get("peak_rss_mb") is not None
    ]
    checks.append(
        _check("server peak RSS per worker", "<= 300 MB", max(rss) if rss else None, lambda v: v <= 300)
    )
    for precision, entry in (result.get("models") or {}).items():
        recall = dig(entry, "scenes", "per_label", "with_mask", "recall")
        check = _check(f"scenes: masked-face recall ({precision})", "report", recall, bool, "(IoU>=0.3)")
        check.info = True
        checks.append(check)
    return checks


def ci_ratio_failures(result: dict[str, Any]) -> list[str]:
    """The only things CI fails on besides errors. Missing numbers are failures too (the job broke)."""
    failures = []
    models = result.get("models") or {}
    if "int8" in models and "float32" in models:
        for threads in sorted(
            set(dig(models, "int8", "threads") or {}) & set(dig(models, "float32", "threads") or {})
        ):
            # CPU time, not wall time: on a shared machine preemption would decide the comparison
            i8 = _num(classifier_p50(result, "int8", threads, key=CI_CLASSIFIER_KEY))
            f32 = _num(classifier_p50(result, "float32", threads, key=CI_CLASSIFIER_KEY))
            if i8 is None or f32 is None:
                failures.append(f"classifier p50 missing for threads={threads}")
            elif i8 > f32 * CI_MAX_INT8_OVER_FLOAT32:
                failures.append(
                    f"int8 slower than float32 (over {CI_MAX_INT8_OVER_FLOAT32:.2f}x), threads={threads}: "
                    f"{i8:.3f} ms vs {f32:.3f} ms CPU per face (p50)"
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


def format_checks(checks: list[Check]) -> str:
    return "Targets (issues #3/#5):\n" + "\n".join(c.line() for c in checks)


def checks_as_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
