"""What the CLI and the report print while a grid runs and after it: a progress bar, a summary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from robustness.grid import GridResult, Progress


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A tqdm bar on stderr, as a grid `Progress` callback: fraction done and cells done/total."""
    bar = tqdm(total=1.0, desc=label, unit="grid", bar_format="{l_bar}{bar}| {postfix}")

    def progress(fraction: float, partial: dict | None) -> None:
        bar.n = round(fraction, 4)
        if partial:
            bar.set_postfix_str(f"{partial['cells_done']}/{partial['cells_total']} cells", refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def print_summary(result: GridResult) -> None:
    t = result.timing
    print(
        f"{result.model.get('precision', '?')}: clean accuracy {result.clean['accuracy']:.4f} on "
        f"{result.evalset['images']} images; {t['cells']} cells in {t['seconds']:.1f} s "
        f"({t['seconds_per_cell']:.2f} s/cell, {t['workers']} worker(s), {t['suffix_only_cells']} cells "
        f"re-ran only the layers after the perturbed one)"
    )
    print(
        f"  CPU time {t['cpu_seconds']:.0f} s -> about {t['cpu_seconds'] / max(t['workers'], 1):.0f} s "
        f"on {t['workers']} idle core(s)"
    )
    for kind, rows in result.ranking.items():
        top = ", ".join(f"{r['name']} ({r['mean_accuracy_drop']:+.3f})" for r in rows[:3])
        low = ", ".join(f"{r['name']} ({r['mean_accuracy_drop']:+.3f})" for r in rows[-2:])
        print(f"  {kind:>8}: most sensitive {top}; least {low}")
    c = result.conclusions
    if c.get("checked"):
        print(
            f"  original conclusions: first layer most sensitive to addition: {c['first_most_sensitive']} "
            f"(rank {c['first_layer']['rank']}/{c['layers']}, {c['layers_tied_most_sensitive']} tied); "
            f"last layer least: {c['last_least_sensitive']} (rank {c['last_layer']['rank']})"
        )
