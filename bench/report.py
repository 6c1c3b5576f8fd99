"""Human-readable views of a benchmark result: a printed table and a PNG chart (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import conditions_line
from masklite.markdown import markdown_table

STAGES = ("decode", "detect", "classify")


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]], md: bool = False) -> str:
    if md:
        return "\n".join(markdown_table(headers, rows, align="r" * len(headers)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, sep, *body])


def classifier_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for precision, entry in result.get("models", {}).items():
        for threads, t in entry.get("threads", {}).items():
            for key, c in t.get("classifier", {}).items():
                lat, pf, cpu = c["latency_ms"], c["per_face_ms"], c.get("cpu_per_face_ms", {})
                rows.append(
                    [
                        precision,
                        threads,
                        str(c["batch"]),
                        _f(lat.get("p50")),
                        _f(lat.get("p90")),
                        _f(lat.get("p99")),
                        _f(lat.get("mean")),
                        _f(lat.get("sd")),
                        _f(pf.get("p50")),
                        _f(cpu.get("p50")),
                        _f(entry["bytes"] / 1e6, 2),
                    ]
                )
                del key
    return rows


def pipeline_rows(result: dict[str, Any], section: str) -> list[list[str]]:
    rows = []
    for precision, entry in result.get("models", {}).items():
        for threads, t in entry.get("threads", {}).items():
            block = t.get(section)
            if not block or not block.get("stages_ms"):
                continue
            s = block["stages_ms"]
            rows.append(
                [
                    precision,
                    threads,
                    *(_f(s[stage]["p50"]) for stage in STAGES),
                    _f(s["total"]["p50"]),
                    _f(s["total"]["p90"]),
                    _f(s["total"]["p99"]),
                    _f(s.get("cpu", {}).get("p50")),
                    str(block.get("faces", "")) if section == "target" else str(block.get("images", "")),
                ]
            )
    return rows


def format_result(result: dict[str, Any], markdown: bool = False) -> str:
    """The whole result as plain-text tables (or Markdown tables for BENCHMARKS.md)."""
    out: list[str] = []
    md = markdown

    def title(text: str) -> str:
        return f"\n**{text.strip()}**\n" if md else "\n" + text.strip()

    def note(text: str) -> str:
        return "\n" + text.strip() + ("  " if md else "")

    if "conditions" in result:  # first line: a noisy run must not be read as a quiet one
        out.append(conditions_line(result["conditions"]) + ("  " if md else ""))
    m = result.get("machine", {})
    out.append(
        f"machine: {m.get('nproc')} cpu ({m.get('cpu_model')}; {' '.join(m.get('cpu_flags') or [])}), "
        f"load avg {m.get('load_avg')}, "
        f"python {m.get('python')}, litert {m.get('versions', {}).get('ai-edge-litert')}"
    )
    out.append(
        title(
            "Classifier latency (ms; per_face = p50 latency / batch; cpu/face = p50 process CPU time / batch)"
        )
    )
    out.append(
        _table(
            ["model", "thr", "batch", "p50", "p90", "p99", "mean", "sd", "per_face", "cpu/face", "size_MB"],
            classifier_rows(result),
            md=md,
        )
    )
    for section, name in (("target", "Pipeline, 640x480 JPEG target"), ("images", "Pipeline, image set")):
        rows = pipeline_rows(result, section)
        if rows:
            last = "faces" if section == "target" else "images"
            out.append(title(f"{name}: p50 per stage, total p50/p90/p99, process CPU p50 (ms)"))
            out.append(
                _table(
                    ["model", "thr", "decode", "detect", "classify", "total", "p90", "p99", "cpu", last],
                    rows,
                    md,
                )
            )
    scores = [(p, e["scenes"]) for p, e in result.get("models", {}).items() if e.get("scenes")]
    if scores:
        out.append(title("Scenes: face recall (IoU>=0.3) and label accuracy on found faces"))
        rows = []
        for p, s in scores:
            per = s.get("per_label", {})
            rows.append(
                [
                    p,
                    f"{s['found_faces']}/{s['annotated_faces']}",
                    _f(s["recall"], 3),
                    _f(per.get("with_mask", {}).get("recall"), 3),
                    _f(s["label_accuracy"], 3),
                    _f(per.get("with_mask", {}).get("label_accuracy"), 3),
                    _f(per.get("without_mask", {}).get("label_accuracy"), 3),
                ]
            )
        out.append(
            _table(
                ["model", "found", "recall", "mask_recall", "accuracy", "acc_mask", "acc_nomask"], rows, md
            )
        )
    for name, per in result.get("speedup", {}).items():
        for threads, row in per.items():
            parts = ", ".join(f"{k} {_f(v)}x" for k, v in row.items())
            out.append(note(f"speedup {name.replace('_vs_', '/')} (p50, threads={threads}): {parts}"))
    http = result.get("http")
    if http:
        out.append(title("In-process pipeline vs HTTP round trip (/v1/predict, loopback, same image; ms)"))
        rows = [
            [
                p,
                _f(h["inprocess_ms"]["p50"]),
                _f(h["http_ms"]["p50"]),
                _f(h["http_ms"]["p99"]),
                _f(h["server_total_ms"]["p50"]),
                _f(h["ratio_p50"]),
            ]
            for p, h in http.get("models", {}).items()
        ]
        out.append(_table(["model", "in-proc_p50", "http_p50", "http_p99", "server_p50", "ratio"], rows, md))
    load = result.get("load")
    if load:
        out.append(title("Load: /v1/predict on loopback (requests/s and latency ms)"))
        rows = []
        for run in load.get("runs", []):
            lat = run.get("latency_ms", {})
            codes = ",".join(f"{k}:{v}" for k, v in sorted(run.get("status_counts", {}).items()))
            rows.append(
                [
                    str(run.get("label", "")),
                    str(run["concurrency"]),
                    _f(run["requests_per_s"], 1),
                    _f(lat.get("p50")),
                    _f(lat.get("p99")),
                    codes,
                    str(run.get("errors", 0)),
                    _f(run.get("server_cpu_ms_per_request")),
                    _f(run.get("cpu_bound_req_per_s"), 1),
                ]
            )
        out.append(
            _table(
                [
                    "setup",
                    "conc",
                    "req/s",
                    "p50",
                    "p99",
                    "status",
                    "errors",
                    "srv_cpu_ms/req",
                    "cpu_bound_req/s",
                ],
                rows,
                md,
            )
        )
    mem = result.get("memory")
    if mem:
        out.append(
            note(f"memory: peak RSS {mem.get('peak_rss_mb')} MB (benchmark process, all models loaded)")
        )
    for label, server in (result.get("servers") or {}).items():
        per = ", ".join(
            f"{m.get('rss_mb')} MB now / {m.get('peak_rss_mb')} MB peak"
            for m in server.get("memory", {}).values()
        )
        out.append(note(f"service {label}: RSS per worker {per}"))
    return "\n".join(out)


def save_chart(result: dict[str, Any], path: Path) -> Path:
    """Classifier per-face latency, pipeline stages, HTTP vs in-process and load throughput in one PNG."""
    import matplotlib  # here, not at import: matplotlib is optional (extra `charts`), the service is not

    matplotlib.use("Agg")  # no display on servers / CI
    import matplotlib.pyplot as plt

    panels = ["classifier", "pipeline"]
    if result.get("http"):
        panels.append("http")
    if result.get("load"):
        panels.append("load")
    ncols = 2 if len(panels) > 2 else len(panels)
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        if panel == "classifier":
            labels, p50, p90, cpu = [], [], [], []
            for precision, entry in result.get("models", {}).items():
                for threads, t in entry.get("threads", {}).items():
                    for c in t.get("classifier", {}).values():
                        labels.append(f"{precision}\nt{threads} b{c['batch']}")
                        p50.append(c["per_face_ms"]["p50"])
                        p90.append(c["per_face_ms"]["p90"])
                        cpu.append(c.get("cpu_per_face_ms", {}).get("p50"))
            x = range(len(labels))
            ax.bar(x, p50, color="tab:blue", label="wall p50")
            ax.scatter(x, p90, color="black", marker="_", s=200, label="wall p90", zorder=3)
            if any(v is not None for v in cpu):
                ax.scatter(x, cpu, color="tab:red", marker="o", s=25, label="CPU p50", zorder=4)
            ax.set_xticks(list(x), labels, fontsize=7)
            ax.set_ylabel("ms per face")
            ax.set_title("Classifier latency per face")
            ax.legend(fontsize=8)
        elif panel == "pipeline":
            labels, bottoms = [], []
            rows = []
            for precision, entry in result.get("models", {}).items():
                for threads, t in entry.get("threads", {}).items():
                    block = t.get("target") or t.get("images")
                    if block and block.get("stages_ms"):
                        labels.append(f"{precision}\nt{threads}")
                        rows.append([block["stages_ms"][s]["p50"] for s in STAGES])
            bottoms = [0.0] * len(rows)
            for i, stage in enumerate(STAGES):
                vals = [r[i] for r in rows]
                ax.bar(range(len(rows)), vals, bottom=bottoms, label=stage)
                bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
            ax.set_xticks(list(range(len(rows))), labels, fontsize=8)
            ax.set_ylabel("ms (p50)")
            ax.set_title("Pipeline per stage, 640x480 target")
            ax.legend(fontsize=8)
        elif panel == "http":
            models = result["http"]["models"]
            names = list(models)
            width = 0.38
            xs = range(len(names))
            ax.bar(
                [x - width / 2 for x in xs],
                [models[n]["inprocess_ms"]["p50"] for n in names],
                width,
                label="in-process",
            )
            ax.bar(
                [x + width / 2 for x in xs],
                [models[n]["http_ms"]["p50"] for n in names],
                width,
                label="HTTP round trip",
            )
            for x, n in zip(xs, names, strict=True):
                ax.text(
                    x,
                    models[n]["http_ms"]["p50"],
                    f"{models[n]['ratio_p50']:.2f}x",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
            ax.set_xticks(list(xs), names)
            ax.set_ylabel("ms (p50)")
            ax.set_title("In-process vs HTTP")
            ax.legend(fontsize=8)
        elif panel == "load":
            by_label: dict[str, list[tuple[int, float, float | None]]] = {}
            for run in result["load"]["runs"]:
                by_label.setdefault(str(run.get("label", "")), []).append(
                    (
                        run["concurrency"],
                        run.get("ok_per_s", run["requests_per_s"]),
                        run.get("cpu_bound_req_per_s"),
                    )
                )
            for i, (label, pts) in enumerate(by_label.items()):
                pts.sort()
                color = f"C{i}"
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=f"{label} 200/s"
                )
                if all(p[2] is not None for p in pts):
                    ax.plot(
                        [p[0] for p in pts],
                        [p[2] for p in pts],
                        ls="--",
                        color=color,
                        label=f"{label} CPU-bound",
                    )
            ax.axhline(100, color="grey", lw=0.8, ls=":", label="target 100/s")
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel("requests/s")
            ax.set_title("Throughput under load")
            ax.legend(fontsize=8)
    m = result.get("machine", {})
    fig.suptitle(f"masklite benchmark — {m.get('nproc')} cpu {m.get('cpu_model', '')}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
