"""Mirror symmetry about the plane x = 0 of the world frame."""

from __future__ import annotations

import torch

from ..geometry.checks import check_index, check_verts
from ..geometry.indexing import gather
from ..geometry.vectors import components, dot


def symmetry_per_vertex(verts: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """|v_i - R v_mirror(i)|^2 with R = diag(-1, 1, 1) (subject's left is +x, DESIGN.md).

    verts: (B, V, 3) float. mirror: (V,) int64 partner of each vertex (itself
    on the midline; -1 for none). Returns (B, V) in squared mesh units, 0 where
    there is no partner.
    """
    check_verts(verts)
    if mirror.shape != (verts.shape[1],):
        raise ValueError(f"mirror must have shape ({verts.shape[1]},), got {tuple(mirror.shape)}")
    check_index(mirror, "mirror", verts.shape[1], allow_negative=True)
    has = mirror >= 0
    vc = components(verts)
    reflected = gather(vc, mirror.clamp(min=0)) * vc.new_tensor([-1.0, 1.0, 1.0])[:, None, None]
    diff = vc - reflected
    return dot(diff, diff) * has.to(verts.dtype)


def symmetry_loss(verts: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """L_sym = mean over vertices with a partner of |v_i - R v_mirror(i)|^2; a scalar in squared mesh units."""
    per_vertex = symmetry_per_vertex(verts, mirror)
    count = (mirror >= 0).sum().clamp(min=1) * verts.shape[0]
    return per_vertex.sum() / count
