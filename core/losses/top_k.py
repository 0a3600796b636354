"""Mean of the largest deviations, shared by the conformal and face-flip terms."""

from __future__ import annotations

import torch


def resolve_k(k: int | float | None, n: int) -> int:
    """How many of ``n`` entries to keep: all for None, ``k`` (capped at n) for an int,
    ``ceil(k * n)`` for a float fraction in (0, 1]."""
    if k is None:
        return n
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be an int count, a float fraction or None, got {type(k).__name__}")
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise ValueError(f"a fractional k must lie in (0, 1], got {k}")
        return max(1, min(n, int(-(-k * n // 1))))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(k, n)


def top_k_mean(values: torch.Tensor, k: int | float | None) -> torch.Tensor:
    """Mean over the batch of the mean of the k largest entries of each row.

    values: (B, N) float, N >= 1. Returns a scalar. The gradient flows only to
    the selected entries, which is what focuses the term on the worst regions.
    """
    kk = resolve_k(k, values.shape[1])
    if kk == values.shape[1]:
        return values.mean()
    return torch.topk(values, kk, dim=1, sorted=False).values.mean()
