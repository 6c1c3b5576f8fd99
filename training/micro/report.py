"""reports/micro.md and reports/micro_accuracy_vs_size.png, rendered from the card entry and the runs."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # the object API: no pyplot state, no display backend

from masklite.card import ModelCard, ModelEntry
from training.micro.entry import MAX_ACC_GAP, MAX_ARENA_BYTES, MAX_FILE_BYTES
from training.micro.runs import fits

PLOT = "micro_accuracy_vs_size.png"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def plot_accuracy_vs_size(path: Path, results, chosen, card: ModelCard, max_bytes: int, gap: float) -> None:
    """Test accuracy against flash (file) and against RAM (TFLM arena); every α-0.35 run has the same weights,
    so the file size only separates the last-conv width, the arena separates the input sizes."""
    trained = [r for r in results if not r.skipped]
    skipped = [r for r in results if r.skipped]
    main = card.models["int8"].metrics.get("test", {}).get("accuracy")
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, limit, xlabel in (
        (axes[0], "file", max_bytes, "int8 .tflite size, flash (KB)"),
        (axes[1], "arena", MAX_ARENA_BYTES, "TFLM tensor arena, RAM (KB)"),
    ):

        def x_of(r, key=key):
            return (r.file_bytes if key == "file" else r.arena["arena_bytes"]) / 1024

        for distill, marker, colour in ((True, "o", "tab:blue"), (False, "s", "tab:orange")):
            rs = [r for r in trained if r.config["distill"] == distill]
            if rs:
                ax.scatter(
                    [x_of(r) for r in rs],
                    [100 * r.int8["test"]["accuracy"] for r in rs],
                    marker=marker,
                    color=colour,
                    s=50,
                    label="distilled" if distill else "hard labels only",
                    zorder=3,
                )
            for k, r in enumerate(sorted(rs, key=lambda r: r.int8["test"]["accuracy"])):
                n = r.config["net"]
                ax.annotate(
                    f"{n['size']}px e{r.config['epochs']}",
                    (x_of(r), 100 * r.int8["test"]["accuracy"]),
                    fontsize=7,
                    xytext=(6, -3 + 7 * (k % 2)),
                    textcoords="offset points",
                )
        ax.scatter(
            [x_of(chosen)],
            [100 * chosen.int8["test"]["accuracy"]],
            s=220,
            facecolors="none",
            edgecolors="green",
            linewidths=2,
            label="shipped (micro)",
            zorder=4,
        )
        if key == "file":
            for r in skipped:
                ax.axvline(
                    r.file_bytes / 1024,
                    color="grey",
                    lw=6,
                    alpha=0.3,
                    label=f"{r.config['net']['size']}px last {r.config['net']['last_channels']}: "
                    "over budget untrained",
                )
        if main is not None:
            ax.axhline(100 * main, color="grey", ls="--", lw=1, label="main int8")
            ax.axhline(100 * (main - gap), color="red", ls=":", lw=1, label="main int8 - 2 pt (target)")
        ax.axvline(limit / 1024, color="red", ls="-.", lw=1, label="budget")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy, int8 LiteRT (%)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Micro model variants: accuracy vs flash and RAM")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(
    reports_dir: Path, card: ModelCard, entry: ModelEntry, results, chosen, allocations: str
) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_size(reports_dir / PLOT, results, chosen, card, MAX_FILE_BYTES, MAX_ACC_GAP)
    x = entry.model_extra or {}
    tflm, m = x["tflm"], entry.metrics
    main = card.models["int8"]
    main_lat = (main.model_extra or {}).get("latency_ms", {}).get("median_ms")
    gap = x["vs_int8"]["test_accuracy_gap"]
    net = x["architecture"]
    ok = {
        "flash": entry.bytes <= MAX_FILE_BYTES,
        "arena": tflm["arena_bytes"] <= MAX_ARENA_BYTES,
        "accuracy": gap is not None and gap <= MAX_ACC_GAP,
        "agreement": tflm["agreement_vs_litert"]["label_agreement"] >= 0.99,
    }

    def mark(k: str) -> str:
        return "met" if ok[k] else "**MISSED**"

    lines = [
        "# Micro model (issue #9): int8 for TensorFlow Lite Micro",
        "",
        f"Shipped: `models/{entry.file}` as `models.micro` in `models/model_card.json` "
        f"(sha256 `{entry.sha256[:16]}…`). Served with `model=micro`.",
        "",
        "## Summary",
        "",
        "| | micro (shipped) | main int8 | target |",
        "|---|---|---|---|",
        f"| architecture | MobileNetV2 α {net['alpha']}, {net['size']}×{net['size']} RGB, last conv "
        f"{net['last_channels']}, from scratch + distillation | MobileNetV2 α 1.0, "
        f"{card.input.size[0]}×{card.input.size[1]}, ImageNet backbone + dense head | |",
        f"| flash (file) | {entry.bytes / 1024:.1f} KB ({entry.bytes:,} B) | {main.bytes / 1024:.0f} KB | "
        f"≤ 500 KB: {mark('flash')} |",
        f"| TFLM tensor arena (smallest that works) | {tflm['arena_bytes'] / 1024:.1f} KB "
        f"({tflm['arena_bytes']:,} B) | – | ≤ 384 KB: {mark('arena')} |",
        f"| MACs / inference | {x['macs']['total'] / 1e6:.2f} M | – | |",
        f"| test accuracy (int8, LiteRT) | {_pct(m['test']['accuracy'])} "
        f"| {_pct(main.metrics.get('test', {}).get('accuracy'))} | "
        f"within 2 pt: {mark('accuracy')} (gap {'n/a' if gap is None else f'{100 * gap:.2f}'} pt) |",
        f"| test balanced accuracy | {_pct(m['test'].get('balanced_accuracy'))} | "
        f"{_pct(main.metrics.get('test', {}).get('balanced_accuracy'))} | |",
        f"| evalset.zip accuracy | {_pct(m['evalset']['accuracy'])} | "
        f"{_pct(main.metrics.get('evalset', {}).get('accuracy'))} | |",
    ]
    if "scenes" in m:
        lines.append(
            f"| scene faces, annotated boxes (cross-source) | {_pct(m['scenes']['annotated']['accuracy'])} | "
            f"{_pct(main.metrics.get('scenes', {}).get('annotated', {}).get('accuracy'))} | |"
        )
        if "detected" in m["scenes"] and "accuracy" in m["scenes"]["detected"]:
            lines.append(
                f"| scene faces, detector boxes | {_pct(m['scenes']['detected']['accuracy'])} | "
                f"{_pct(main.metrics.get('scenes', {}).get('detected', {}).get('accuracy'))} | |"
            )
    lines += [
        f"| LiteRT latency here (1 thread, batch 1, median) | {x['latency_ms']['median_ms']:.2f} ms | "
        f"{'n/a' if main_lat is None else f'{main_lat:.2f} ms'} | |",
        "| TFLM latency here (Python interpreter, reference kernels, "
        f"median) | {tflm['latency_ms']['median_ms']:.2f} ms"
        " | – | |",
        f"| TFLM vs LiteRT on {tflm['agreement_vs_litert']['source']} "
        f"({tflm['agreement_vs_litert']['n']} crops, at the minimum arena) | label agreement "
        f"{_pct(tflm['agreement_vs_litert']['label_agreement'])}, identical int8 outputs "
        f"{_pct(tflm['agreement_vs_litert']['identical_outputs'])}, max diff "
        f"{tflm['agreement_vs_litert']['max_abs_diff_int8_steps']} "
        f"int8 steps | – | ≥ 99 %: {mark('agreement')} |",
        "",
        "Latencies were measured on a shared 2-core x86 CPU with other jobs running: compare them with each "
        "other, not with a microcontroller. TFLM here runs its portable reference kernels; on a Cortex-M the "
        "CMSIS-NN kernels are what matters, and the MAC count is the better guide to the cost there.",
        "",
        *_status(ok, gap, results, chosen, main.metrics.get("test", {}).get("accuracy")),
        "## Variants tried",
        "",
        f"![accuracy vs size]({PLOT})",
        "",
        "All runs: MobileNetV2 (training/micro/net.py), α 0.35, "
        "from scratch, same train views as the main model "
        "(the cached clean, plain, degraded and synthetic-mask views of every source), random horizontal "
        "flip, Adam + cosine decay, full-integer int8 export with 200 representative train crops. "
        "`kd` = distilled from the main (fine-tuned) float32 model (α_kd, T below), `ce` = hard labels "
        "only. Its decision threshold and cross-source figures are in MODEL_CARD.md.",
        "",
        "| run | input | last conv | KD | epochs | train s (wall, shared CPU) | "
        "file KB | arena KB | MACs (M) | val int8 | test int8 "
        "| test Keras float | fits |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r.config["net"]["size"], r.file_bytes, not r.config["distill"])):
        n = r.config["net"]
        if r.skipped:
            lines.append(
                f"| `{r.config['name']}` | {n['size']}×{n['size']} | {n['last_channels']} | "
                f"{'yes' if r.config['distill'] else 'no'} | – | not trained | {r.file_bytes / 1024:.1f} | "
                f"– | {r.macs['total'] / 1e6:.2f} | {r.skipped} | | | no |"
            )
            continue
        star = " **(shipped)**" if r.config["name"] == chosen.config["name"] else ""
        lines.append(
            f"| `{r.config['name']}`{star} | {n['size']}×{n['size']} | {n['last_channels']} | "
            f"{'yes' if r.config['distill'] else 'no'} | {r.config['epochs']} | {r.train_seconds:.0f} | "
            f"{r.file_bytes / 1024:.1f} | {r.arena['arena_bytes'] / 1024:.1f} "
            f"| {r.macs['total'] / 1e6:.2f} | "
            f"{_pct(r.int8['val']['accuracy'])} | {_pct(r.int8['test']['accuracy'])} | "
            f"{_pct(r.keras['test']['accuracy'])} | {'yes' if fits(r) else 'no'} |"
        )
    lines += _distill_section(results)
    lines += [
        "",
        "## How it was chosen",
        "",
        f"{x['selection']}. Budgets: file ≤ {MAX_FILE_BYTES // 1024} "
        f"KB, arena ≤ {MAX_ARENA_BYTES // 1024} KB.",
        "",
        "Why not the alternatives:",
        "",
        "* **keras.applications MobileNetV2 α 0.35 as is**: "
        "no ImageNet weights for α < 1 here, so no transfer "
        "benefit; its stride-2 `ZeroPadding2D` becomes a PAD op whose output is a second copy of the largest "
        "activation in the arena, its last 1×1 conv is fixed "
        "at 1280 channels (≈35 % of the weights), and its "
        "BatchNorm momentum 0.999 needs more steps than a few-minute CPU run gives. The same network with "
        "'same' padding and momentum 0.9 is the `last1280` row above (size measured on an untrained "
        "export; over the flash budget, so not trained).",
        "* **grayscale**: saves only the stem conv's input channels (well under 1 % of the MACs) and the "
        "input buffer, would need a colour conversion added to the card's preprocessing, and throws away the "
        "colour of the mask.",
        "",
        "## Reproduce",
        "",
        "```",
        "python -m training build            # the main model and its card first (teacher, split, evalset)",
        "python -m training micro            # data -> teacher -> train (cached per run) -> ship",
        "python -m training micro --stage ship   # re-select and re-measure from the cached runs",
        "python -m training.micro.tflm models/masklite_micro_int8.tflite   # arena search + MACs alone",
        "```",
        "",
        "Teacher soft labels: the main model's Keras form on every train view, taken from the cached frozen "
        "backbone features (the views are replayed exactly; a full Keras teacher pass on "
        f"{x['training']['teacher']['check']['views_checked']} views agrees to "
        f"{x['training']['teacher']['check']['max_abs_prob_diff']:.1e}).",
        "",
        "Arena: binary search on the arena size, every probe "
        "a fresh process (a too-small arena can crash the "
        "interpreter), a probe passing when TFLM allocates, "
        "invokes and returns the same output as with a large "
        f"arena. Searched twice: {tflm['arena_search']['arena_bytes']:,} and "
        f"{tflm['arena_search']['repeat_arena_bytes']:,} bytes; {tflm['arena_search']['fails_at']:,} fails.",
        "",
        "The card entry carries its own input spec (`models.micro.input`); "
        "`ModelCard.model_input(precision)` returns it, and `masklite.pipeline.predict_frame` uses "
        "the spec of the model it is given, so the service "
        "needs no change for `model=micro`.",
        "",
        "## TFLM allocations (RecordingMicroAllocator, at the minimum arena)",
        "",
        "```",
        allocations.strip(),
        "```",
        "",
    ]
    path = reports_dir / "micro.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _distill_section(results) -> list[str]:
    pairs = []
    results = [r for r in results if not r.skipped]
    for r in results:
        if not r.config["distill"]:
            twin = next(
                (
                    k
                    for k in results
                    if k.config["distill"]
                    and k.config["net"] == r.config["net"]
                    and k.config["epochs"] == r.config["epochs"]
                ),
                None,
            )
            if twin is not None:
                pairs.append((twin, r))
    if not pairs:
        return []
    out = [
        "",
        "## Distillation vs hard labels (same network, data, epochs, seed)",
        "",
        "| network | val int8 KD | val int8 hard | test int8 KD "
        "| test int8 hard | test Keras KD | test Keras hard |",
        "|---|---|---|---|---|---|---|",
    ]
    for kd, ce in pairs:
        n = kd.config["net"]
        out.append(
            f"| {n['size']}px / last {n['last_channels']} | {_pct(kd.int8['val']['accuracy'])} | "
            f"{_pct(ce.int8['val']['accuracy'])} | {_pct(kd.int8['test']['accuracy'])} | "
            f"{_pct(ce.int8['test']['accuracy'])} | {_pct(kd.keras['test']['accuracy'])} | "
            f"{_pct(ce.keras['test']['accuracy'])} |"
        )
    kd0 = pairs[0][0].config
    out += [
        "",
        f"KD settings: α_kd = {kd0['alpha']} (weight of the distillation term), T = {kd0['temperature']}. "
        "One seed each: differences of a few test images (1 image = 0.17 pt) are within run-to-run noise.",
    ]
    return out


def _status(ok: dict[str, bool], gap: float | None, results, chosen, main_test: float | None) -> list[str]:
    if all(ok.values()):
        return ["**All four targets are met.**", ""]
    missed = ", ".join(k for k, v in ok.items() if not v)
    out = [f"**Targets missed: {missed}.**"]
    if not ok["accuracy"] and gap is not None:
        out.append(
            f" The test gap to the main int8 model is {100 * gap:.2f} pt (target 2 pt). Every run was cut to "
            "a few CPU-minutes on a shared 2-core machine; train accuracy was still rising at the last "
            "epoch of every run, and 96 px beat 64 px on val at equal epochs, so longer 96 px training "
            "(`--runs 96s:kd:<epochs>`) is the next step."
        )
    if main_test is not None and not ok["accuracy"]:
        within = [
            r
            for r in results
            if not r.skipped
            and fits(r)
            and r is not chosen
            and main_test - r.int8["test"]["accuracy"] <= MAX_ACC_GAP
        ]
        for r in within:
            out.append(
                f" Run `{r.config['name']}` is within the target on test "
                f"({_pct(r.int8['test']['accuracy'])}) but lower on val "
                f"({_pct(r.int8['val']['accuracy'])} vs "
                f"{_pct(chosen.int8['val']['accuracy'])}), "
                "and the selection never looks at test; the two differ by a few images on either split."
            )
    return [*out, ""]
