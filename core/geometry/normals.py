"""Triangle normals and areas."""

from __future__ import annotations

import torch

from .safe import safe_norm, safe_normalize


def face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised triangle normals ``(v1 - v0) x (v2 - v0)`` (length = twice the area).

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F, 3), same dtype.
    """
    v0, v1, v2 = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit triangle normals; a degenerate triangle gets the zero vector.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F, 3).
    """
    return safe_normalize(face_cross(verts, faces))


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas in squared mesh units.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F).
    """
    return 0.5 * safe_norm(face_cross(verts, faces))
