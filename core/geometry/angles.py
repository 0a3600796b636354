"""Interior corner angles of triangles and polygons."""

from __future__ import annotations

import torch

from .safe import safe_atan2, safe_norm


def corner_angles(verts: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Angle at each corner between the edges to its previous and next vertex, in radians [0, pi].

    verts: (B, V, 3) float. corners: (C, 3) int64 (previous, vertex, next), e.g.
    ``MeshTopology.face_corners`` or ``.polygon_corners``. Returns (B, C).
    Computed as atan2(|a x b|, a . b), exact near 0 and pi where acos is not;
    a corner with a zero-length side gets 0 with zero gradient.
    """
    centre = verts[:, corners[:, 1]]
    a = verts[:, corners[:, 0]] - centre
    b = verts[:, corners[:, 2]] - centre
    return safe_atan2(safe_norm(torch.linalg.cross(a, b, dim=-1)), (a * b).sum(-1))
