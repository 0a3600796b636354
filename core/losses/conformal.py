"""Angle preservation (paper §4.2.2): corner angles against the template's, worst k only."""

from __future__ import annotations

import torch

from ..geometry.angles import corner_angles
from ..geometry.checks import check_same_batch, check_verts
from .top_k import top_k_mean


def conformal_per_corner(verts: torch.Tensor, target_verts: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """|theta_s - theta_t| for every corner.

    verts: (B, V, 3) float. target_verts: (1 or B, V, 3) float (template or
    previous shape). corners: (C, 3) int64 (previous, vertex, next), e.g.
    ``MeshTopology.polygon_corners`` so quad angles (edge flow) are kept.
    Returns (B, C) radians.
    """
    check_verts(verts)
    check_verts(target_verts, "target_verts", verts.shape[1])
    check_same_batch(verts, target_verts, "verts", "target_verts")
    return (corner_angles(verts, corners) - corner_angles(target_verts, corners)).abs()


def conformal_loss(
    verts: torch.Tensor, target_verts: torch.Tensor, corners: torch.Tensor, k: int | float | None = None
) -> torch.Tensor:
    """L_conf = mean of the k largest |theta_s - theta_t| per mesh, then over the batch.

    k: a count, a fraction in (0, 1], or None for all corners (the paper's
    Omega_theta, and its sum divided by k). Returns a scalar in radians.
    """
    return top_k_mean(conformal_per_corner(verts, target_verts, corners), k)
