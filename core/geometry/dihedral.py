"""Signed dihedral angles across interior edges."""

from __future__ import annotations

import torch

from .normals import face_cross
from .safe import safe_atan2, safe_norm
from .topology import MeshTopology


def dihedral_angles(verts: torch.Tensor, topology: MeshTopology) -> torch.Tensor:
    """Signed bending angle between the normals of the two triangles at each interior edge.

    verts: (B, V, 3) float. Returns (B, Ei) radians in (-pi, pi], one per
    ``topology.interior_edges``. Its magnitude is arccos(n1 . n2) (the paper's
    theta^e); the sign is positive where the surface is convex (bends away
    from its normals), negative where concave, so flat is 0 and the angle is
    smooth there (arccos has an infinite gradient at 0). Degenerate triangles
    give 0 with zero gradient.
    """
    cross = face_cross(verts, topology.faces)
    n1 = cross[:, topology.hinge_faces[:, 0]]
    n2 = cross[:, topology.hinge_faces[:, 1]]
    edge = verts[:, topology.hinge_verts[:, 1]] - verts[:, topology.hinge_verts[:, 0]]
    length = safe_norm(edge)
    # (n1 x n2) is parallel to the edge, so its projection on the unit edge is
    # |n1||n2| sin(theta) with sign; n1 . n2 is |n1||n2| cos(theta).
    sine = (torch.linalg.cross(n1, n2, dim=-1) * edge).sum(-1)
    sine = torch.where(length > 0, sine / torch.where(length > 0, length, torch.ones_like(length)), torch.zeros_like(sine))
    return safe_atan2(sine, (n1 * n2).sum(-1))
