"""Laplacian energy relative to the template's differential coordinates."""

from __future__ import annotations

import torch

from ..geometry.checks import check_same_batch, check_verts
from ..geometry.laplacian import Laplacian
from ..geometry.vectors import components, dot


def laplacian_energy_per_vertex(verts: torch.Tensor, rest_verts: torch.Tensor, laplacian: Laplacian) -> torch.Tensor:
    """|L(V)_i - L(V_rest)_i|^2 = |L(V - V_rest)_i|^2 (L is linear with fixed weights).

    verts: (B, V, 3) float. rest_verts: (1 or B, V, 3) float (the template).
    laplacian: :class:`Laplacian` (uniform or cotangent). Returns (B, V) in
    squared mesh units.
    """
    check_verts(verts)
    check_verts(rest_verts, "rest_verts", verts.shape[1])
    check_same_batch(verts, rest_verts, "verts", "rest_verts")
    delta = laplacian.apply_c(components(verts - rest_verts))
    return dot(delta, delta)


def laplacian_energy(verts: torch.Tensor, rest_verts: torch.Tensor, laplacian: Laplacian) -> torch.Tensor:
    """E_lap = mean_i |L(V)_i - L(V_rest)_i|^2, a scalar in squared mesh units.

    Zero for any translation of the rest mesh (and, with the uniform operator,
    penalises changes of local shape, not position).
    """
    return laplacian_energy_per_vertex(verts, rest_verts, laplacian).mean()
