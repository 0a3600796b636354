"""Uniform and cotangent mesh Laplacians as fixed edge-weighted operators."""

from __future__ import annotations

import dataclasses

import torch

from .safe import COT_MAX, safe_divide, safe_norm
from .topology import MeshTopology


@dataclasses.dataclass(frozen=True)
class Laplacian:
    """A linear Laplacian ``delta_i = s_i * sum_j w_ij (v_i - v_j)`` with fixed weights.

    Fields: edges (E, 2) int64; weights (E,) float w_ij; scale (V,) float s_i.
    Uniform: w = 1, s = 1/degree, so delta_i = v_i - mean of its neighbours.
    Cotangent: w = (cot alpha + cot beta) / 2 of the rest mesh, s = 1, the
    integrated mean-curvature normal. Either way delta is in mesh units.
    """

    edges: torch.Tensor
    weights: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def uniform(cls, topology: MeshTopology, dtype: torch.dtype = torch.float32) -> "Laplacian":
        """The umbrella operator of ``topology``; isolated vertices get delta = 0."""
        weights = torch.ones(topology.edges.shape[0], dtype=dtype, device=topology.device)
        degree = topology.vertex_degree.to(dtype)
        return cls(topology.edges, weights, safe_divide(torch.ones_like(degree), degree))

    @classmethod
    def cotangent(cls, rest_verts: torch.Tensor, topology: MeshTopology) -> "Laplacian":
        """Cotangent weights measured on ``rest_verts``: (V, 3) float (the template).

        Degenerate corners contribute 0 and |cot| is capped at ``COT_MAX`` so
        sliver triangles cannot dominate.
        """
        if rest_verts.dim() != 2 or rest_verts.shape != (topology.num_verts, 3):
            raise ValueError(f"rest_verts must have shape ({topology.num_verts}, 3), got {tuple(rest_verts.shape)}")
        corners = topology.face_corners
        centre = rest_verts[corners[:, 1]]
        a, b = rest_verts[corners[:, 0]] - centre, rest_verts[corners[:, 2]] - centre
        cot = safe_divide((a * b).sum(-1), safe_norm(torch.linalg.cross(a, b, dim=-1))).clamp(-COT_MAX, COT_MAX)
        # Side s of a triangle, (f_s, f_s+1), lies opposite corner s+2.
        opposite = cot.reshape(-1, 3)[:, [2, 0, 1]]
        weights = torch.zeros(topology.edges.shape[0], dtype=rest_verts.dtype, device=rest_verts.device)
        weights = weights.index_add(0, topology.face_edges.reshape(-1), 0.5 * opposite.reshape(-1))
        return cls(topology.edges, weights, torch.ones(topology.num_verts, dtype=rest_verts.dtype, device=rest_verts.device))

    def apply(self, verts: torch.Tensor) -> torch.Tensor:
        """Differential coordinates. verts: (B, V, 3) float. Returns (B, V, 3)."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        flow = self.weights.to(verts.dtype)[None, :, None] * (verts[:, i] - verts[:, j])  # (B, E, 3)
        delta = torch.zeros_like(verts).index_add(1, i, flow).index_add(1, j, -flow)
        return self.scale.to(verts.dtype)[None, :, None] * delta

    def matrix(self) -> torch.Tensor:
        """The operator as a sparse (V, V) COO tensor, L = diag(s) (D - W)."""
        num_verts = self.scale.shape[0]
        i, j = self.edges[:, 0], self.edges[:, 1]
        w = self.weights
        degree = torch.zeros(num_verts, dtype=w.dtype, device=w.device).index_add(0, i, w).index_add(0, j, w)
        diag = torch.arange(num_verts, device=w.device)
        rows = torch.cat([i, j, diag])
        cols = torch.cat([j, i, diag])
        values = torch.cat([-w, -w, degree]) * self.scale[rows]
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (num_verts, num_verts), check_invariants=True).coalesce()

    def to(self, device: torch.device | str) -> "Laplacian":
        """A copy on ``device``."""
        return Laplacian(self.edges.to(device), self.weights.to(device), self.scale.to(device))
