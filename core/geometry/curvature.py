"""Edge-to-vertex curvature: dihedral angles redistributed to vertices (EV-GCC, eq. 2)."""

from __future__ import annotations

import torch

from .dihedral import dihedral_angles
from .indexing import scatter_add
from .safe import safe_divide
from .topology import MeshTopology


def edge_to_vertex_curvature(
    verts: torch.Tensor, topology: MeshTopology, importance: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-vertex curvature c_i = sum_j w_(i->ij) theta_ij, w_(i->ij) = I_ij / sum_k I_ik.

    verts: (B, V, 3) float. importance: optional (Ei,) or (B, Ei) float, the
    weight I of each interior edge (``topology.interior_edges`` order), 1 if
    omitted. theta is the signed dihedral angle (:func:`dihedral_angles`).
    Returns (B, V) radians; vertices without interior edges get 0.
    """
    theta = dihedral_angles(verts, topology)  # (B, Ei)
    if importance is None:
        importance = torch.ones_like(theta)
    importance = importance.to(theta.dtype).expand_as(theta)
    ends = topology.hinge_verts.T.reshape(-1)  # every edge counts at both its ends
    weighted = scatter_add((importance * theta).repeat(1, 2), ends, topology.num_verts)
    total = scatter_add(importance.repeat(1, 2), ends, topology.num_verts)
    return safe_divide(weighted, total)
