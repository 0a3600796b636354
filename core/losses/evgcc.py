"""Edge-to-Vertex Gaussian Curvature Consistency (EV-GCC, paper §4.2.2, eq. 2)."""

from __future__ import annotations

import torch

from ..geometry.checks import check_same_batch, check_verts
from ..geometry.curvature import edge_to_vertex_curvature
from ..geometry.indexing import gather
from ..geometry.safe import safe_norm3
from ..geometry.topology import MeshTopology
from ..geometry.vectors import components


def edge_importance(verts: torch.Tensor, topology: MeshTopology) -> torch.Tensor:
    """Default importance I_ij of each interior edge: its length (a longer edge bends more surface).

    verts: (B, V, 3) float. Returns (B, Ei) in mesh units (only ratios matter).
    """
    start, end = gather(components(verts), topology.hinge_verts.T).unbind(2)
    return safe_norm3(end - start)


def evgcc_target(target_verts: torch.Tensor, topology: MeshTopology,
                 importance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's side of the term, (importance (1 or B, Ei), curvature c_t (1 or B, V)):
    compute it once for a target that stays fixed and pass it as ``target``."""
    check_verts(target_verts, "target_verts", topology.num_verts)
    if importance is None:
        importance = edge_importance(target_verts.detach(), topology)
    importance = importance if importance.dim() == 2 else importance[None]
    if target_verts.shape[0] < importance.shape[0]:
        target_verts = target_verts.expand(importance.shape[0], -1, -1)
    return importance, edge_to_vertex_curvature(target_verts, topology, importance)


def evgcc_per_vertex(
    verts: torch.Tensor,
    target_verts: torch.Tensor,
    topology: MeshTopology,
    importance: torch.Tensor | None = None,
    target: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """|c_i^s - c_i^t| with c the edge-to-vertex curvature of eq. 2.

    verts: (B, V, 3) float. target_verts: (1 or B, V, 3) float (the template).
    importance: (Ei,) or (1 or B, Ei) float; defaults to the target's edge
    lengths (held constant), so both meshes use the same weights w_(i->ij).
    target: ``evgcc_target(target_verts, topology, importance)`` when already
    computed (``importance`` is then ignored).
    The dihedral angles are signed (convex +, concave -), so a fold that turns
    inside out costs twice its angle. Returns (B, V) radians.
    """
    check_verts(verts, num_verts=topology.num_verts)
    check_verts(target_verts, "target_verts", topology.num_verts)
    check_same_batch(verts, target_verts, "verts", "target_verts")
    importance, c_t = evgcc_target(target_verts, topology, importance) if target is None else target
    check_same_batch(verts, importance, "verts", "importance")
    c_s = edge_to_vertex_curvature(verts, topology, importance)
    return (c_s - c_t).abs()


def evgcc_loss(
    verts: torch.Tensor,
    target_verts: torch.Tensor,
    topology: MeshTopology,
    importance: torch.Tensor | None = None,
    target: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """L_GCC = mean_i |c_i^s - c_i^t| (the paper's sum divided by V), a scalar in radians.
    target: as in ``evgcc_per_vertex``."""
    return evgcc_per_vertex(verts, target_verts, topology, importance, target).mean()
