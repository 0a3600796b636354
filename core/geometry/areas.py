"""Per-vertex areas."""

from __future__ import annotations

import torch

from .indexing import scatter_add
from .normals import face_areas


def vertex_areas(verts: torch.Tensor, faces: torch.Tensor, num_verts: int | None = None) -> torch.Tensor:
    """Barycentric vertex areas: each triangle gives a third of its area to each corner.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, V) in squared mesh
    units; they sum to the mesh area. Vertices in no triangle get 0.
    """
    num_verts = verts.shape[1] if num_verts is None else num_verts
    third = face_areas(verts, faces) / 3.0  # (B, F)
    return scatter_add(third.repeat(1, 3), faces.T.reshape(-1), num_verts)
