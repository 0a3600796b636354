"""Interior corner angles of triangles and polygons."""

from __future__ import annotations

import torch

from .indexing import gather
from .safe import safe_atan2, safe_norm3
from .vectors import components, cross, dot


def corner_angles_c(vc: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """:func:`corner_angles` for component-major vertices vc: (3, B, V). Returns (B, C)."""
    prev, centre, nxt = gather(vc, corners.T).unbind(2)
    a, b = prev - centre, nxt - centre
    return safe_atan2(safe_norm3(cross(a, b)), dot(a, b))


def corner_angles(verts: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Angle at each corner between the edges to its previous and next vertex, in radians [0, pi].

    verts: (B, V, 3) float. corners: (C, 3) int64 (previous, vertex, next), e.g.
    ``MeshTopology.face_corners`` or ``.polygon_corners``. Returns (B, C).
    Computed as atan2(|a x b|, a . b), exact near 0 and pi where acos is not;
    a corner with a zero-length side gets 0 with zero gradient.
    """
    return corner_angles_c(components(verts), corners)
