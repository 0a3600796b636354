"""Vertex displacement regularisation (paper §4.2.3)."""

from __future__ import annotations

import torch

from ..geometry.safe import safe_norm3
from ..geometry.vectors import components


def displacement_per_vertex(offsets: torch.Tensor) -> torch.Tensor:
    """|delta v_i| for each vertex. offsets: (B, V, 3) float. Returns (B, V) in mesh units."""
    if offsets.dim() != 3 or offsets.shape[-1] != 3:
        raise ValueError(f"offsets must have shape (B, V, 3), got {tuple(offsets.shape)}")
    return safe_norm3(components(offsets))


def displacement_loss(offsets: torch.Tensor) -> torch.Tensor:
    """L_disp = mean_i |delta v_i| (the paper's sum divided by V, so weights do not depend on resolution).

    offsets: (B, V, 3) float per-vertex offsets (vertex stage variables, or
    current minus previous vertices). Returns a scalar in mesh units (metres);
    the gradient at a zero offset is 0.
    """
    return displacement_per_vertex(offsets).mean()
