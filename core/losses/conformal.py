"""Angle preservation (paper §4.2.2): corner angles against the template's, worst k only."""

from __future__ import annotations

import torch

from ..geometry.angles import corner_angles
from ..geometry.checks import check_same_batch, check_verts
from .top_k import top_k_mean


def conformal_target(target_verts: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """The target's side of the term, (1 or B, C) corner angles: compute it once for a
    target that stays fixed over many evaluations and pass it as ``target``."""
    check_verts(target_verts, "target_verts")
    return corner_angles(target_verts, corners)


def conformal_per_corner(verts: torch.Tensor, target_verts: torch.Tensor, corners: torch.Tensor,
                         target: torch.Tensor | None = None) -> torch.Tensor:
    """|theta_s - theta_t| for every corner.

    verts: (B, V, 3) float. target_verts: (1 or B, V, 3) float (template or
    previous shape). corners: (C, 3) int64 (previous, vertex, next), e.g.
    ``MeshTopology.polygon_corners`` so quad angles (edge flow) are kept.
    target: ``conformal_target(target_verts, corners)`` when already computed.
    Returns (B, C) radians.
    """
    check_verts(verts)
    check_verts(target_verts, "target_verts", verts.shape[1])
    check_same_batch(verts, target_verts, "verts", "target_verts")
    theta_t = conformal_target(target_verts, corners) if target is None else target
    return (corner_angles(verts, corners) - theta_t).abs()


def conformal_loss(
    verts: torch.Tensor, target_verts: torch.Tensor, corners: torch.Tensor, k: int | float | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_conf = mean of the k largest |theta_s - theta_t| per mesh, then over the batch.

    k: a count, a fraction in (0, 1], or None for all corners (the paper's
    Omega_theta, and its sum divided by k). target: as in ``conformal_per_corner``.
    Returns a scalar in radians.
    """
    return top_k_mean(conformal_per_corner(verts, target_verts, corners, target), k)
