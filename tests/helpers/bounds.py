"""Accuracy bounds taken from the model card, so a test fails when the product drops below what the card
promises, and not only when it collapses.

card_floor(p, n): the card's own figure p, measured on n cases, minus its Wilson margin: the lower end of
the 95 % Wilson score interval of p at n (training.crosssource.wilson, the interval the card prints). On
the same data the service should measure p itself; the margin absorbs what legitimately moves it (another
detector runtime, a rounding in a wheel) and nothing like a ten-point drop.
"""

from __future__ import annotations

from training.crosssource import wilson


def card_floor(p: float, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson interval around the card's figure `p` on `n` cases."""
    if not 0.0 <= p <= 1.0 or n <= 0:
        raise ValueError(f"need 0 <= p <= 1 and n > 0, got p={p}, n={n}")
    return wilson(round(p * n), n, z)[0]
