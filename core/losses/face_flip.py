"""Face-flip constraint (paper §4.2.3): unit face normals against the template's, worst k only."""

from __future__ import annotations

import torch

from ..geometry.checks import check_same_batch, check_verts
from ..geometry.normals import face_normals_c
from ..geometry.safe import safe_norm3
from ..geometry.vectors import components
from .top_k import top_k_mean


def face_flip_target(target_verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The target's side of the term, its unit face normals (components, (3, 1 or B, F)):
    compute it once for a target that stays fixed and pass it as ``target``."""
    check_verts(target_verts, "target_verts")
    return face_normals_c(components(target_verts), faces)


def face_flip_per_face(verts: torch.Tensor, target_verts: torch.Tensor, faces: torch.Tensor,
                       target: torch.Tensor | None = None) -> torch.Tensor:
    """|n_s - n_t| for every triangle.

    verts: (B, V, 3) float. target_verts: (1 or B, V, 3) float (template or
    previous iterate). faces: (F, 3) int64. target: ``face_flip_target(target_verts,
    faces)`` when already computed. Returns (B, F), dimensionless in [0, 2]: 2 for a
    fully flipped face; a degenerate face (zero normal) gives 1.
    """
    check_verts(verts)
    check_verts(target_verts, "target_verts", verts.shape[1])
    check_same_batch(verts, target_verts, "verts", "target_verts")
    n_t = face_flip_target(target_verts, faces) if target is None else target
    return safe_norm3(face_normals_c(components(verts), faces) - n_t)


def face_flip_loss(
    verts: torch.Tensor, target_verts: torch.Tensor, faces: torch.Tensor, k: int | float | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_flip = mean of the k largest |n_s - n_t| per mesh, then over the batch.

    k: a count, a fraction in (0, 1], or None for all faces (the paper's
    Omega_n, and its sum divided by k). target: as in ``face_flip_per_face``.
    Returns a dimensionless scalar.
    """
    return top_k_mean(face_flip_per_face(verts, target_verts, faces, target), k)
