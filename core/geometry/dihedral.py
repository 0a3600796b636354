"""Signed dihedral angles across interior edges."""

from __future__ import annotations

import torch

from .indexing import gather
from .normals import face_cross_c
from .safe import safe_atan2, safe_divide, safe_norm3
from .topology import MeshTopology
from .vectors import components, cross, dot


def dihedral_angles(verts: torch.Tensor, topology: MeshTopology) -> torch.Tensor:
    """Signed bending angle between the normals of the two triangles at each interior edge.

    verts: (B, V, 3) float. Returns (B, Ei) radians in (-pi, pi], one per
    ``topology.interior_edges``. Its magnitude is arccos(n1 . n2) (the paper's
    theta^e); the sign is positive where the surface is convex (bends away
    from its normals), negative where concave, so flat is 0 and the angle is
    smooth there (arccos has an infinite gradient at 0). Degenerate triangles
    give 0 with zero gradient.
    """
    vc = components(verts)
    n1, n2 = gather(face_cross_c(vc, topology.faces), topology.hinge_faces.T).unbind(2)
    start, end = gather(vc, topology.hinge_verts.T).unbind(2)
    edge = end - start
    # (n1 x n2) is parallel to the edge, so its projection on the unit edge is
    # |n1||n2| sin(theta) with sign; n1 . n2 is |n1||n2| cos(theta).
    sine = safe_divide(dot(cross(n1, n2), edge), safe_norm3(edge))
    return safe_atan2(sine, dot(n1, n2))
