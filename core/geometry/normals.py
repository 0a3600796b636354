"""Triangle normals and areas."""

from __future__ import annotations

import torch

from .indexing import gather
from .safe import safe_norm3, safe_normalize3
from .vectors import components, cross, interleaved


def face_cross_c(vc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised normals ``(v1 - v0) x (v2 - v0)`` (length = twice the area), component-major.

    vc: (3, B, V) float (:func:`~core.geometry.vectors.components`). faces: (F, 3) int64. Returns (3, B, F).
    """
    v0, v1, v2 = gather(vc, faces.T).unbind(2)
    return cross(v1 - v0, v2 - v0)


def face_normals_c(vc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals, component-major; a degenerate triangle gets 0. vc: (3, B, V). Returns (3, B, F)."""
    return safe_normalize3(face_cross_c(vc, faces))


def face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised triangle normals. verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F, 3)."""
    return interleaved(face_cross_c(components(verts), faces))


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit triangle normals; a degenerate triangle gets the zero vector.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F, 3).
    """
    return interleaved(face_normals_c(components(verts), faces))


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas in squared mesh units.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F).
    """
    return 0.5 * safe_norm3(face_cross_c(components(verts), faces))
