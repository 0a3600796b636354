"""Uniform and cotangent mesh Laplacians as fixed edge-weighted operators."""

from __future__ import annotations

import dataclasses

import torch

from .indexing import gather, scatter_add
from .constants import COT_MAX
from .safe import safe_divide, safe_norm3
from .vectors import components, cross, dot, interleaved
from .topology import MeshTopology


@dataclasses.dataclass(frozen=True)
class Laplacian:
    """A linear Laplacian ``delta_i = s_i * sum_j w_ij (v_i - v_j)`` with fixed weights.

    Fields: edges (E, 2) int64; weights (E,) float w_ij; scale (V,) float s_i.
    Uniform: w = 1, s = 1/degree, so delta_i = v_i - mean of its neighbours.
    Combinatorial: w = 1, s = 1, the graph Laplacian D - A (large steps, harmonic fills).
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
    def combinatorial(cls, topology: MeshTopology, dtype: torch.dtype = torch.float32) -> "Laplacian":
        """The graph Laplacian ``D - A`` of ``topology``: unit weights, no scaling."""
        weights = torch.ones(topology.edges.shape[0], dtype=dtype, device=topology.device)
        return cls(topology.edges, weights, torch.ones(topology.num_verts, dtype=dtype, device=topology.device))

    @classmethod
    def cotangent(cls, rest_verts: torch.Tensor, topology: MeshTopology) -> "Laplacian":
        """Cotangent weights measured on ``rest_verts``: (V, 3) float (the template).

        Degenerate corners contribute 0 and |cot| is capped at ``COT_MAX`` so
        sliver triangles cannot dominate.
        """
        if rest_verts.dim() != 2 or rest_verts.shape != (topology.num_verts, 3):
            raise ValueError(f"rest_verts must have shape ({topology.num_verts}, 3), got {tuple(rest_verts.shape)}")
        prev, centre, nxt = gather(components(rest_verts[None]), topology.face_corners.T).unbind(2)
        a, b = prev - centre, nxt - centre
        cot = safe_divide(dot(a, b), safe_norm3(cross(a, b))).clamp(-COT_MAX, COT_MAX)[0]
        # Side s of a triangle, (f_s, f_s+1), lies opposite corner s+2.
        opposite = cot.reshape(-1, 3)[:, [2, 0, 1]]
        weights = torch.zeros(topology.edges.shape[0], dtype=rest_verts.dtype, device=rest_verts.device)
        weights = weights.index_add(0, topology.face_edges.reshape(-1), 0.5 * opposite.reshape(-1))
        return cls(topology.edges, weights, torch.ones_like(rest_verts[:, 0]))

    def apply(self, verts: torch.Tensor) -> torch.Tensor:
        """Differential coordinates. verts: (B, V, 3) float. Returns (B, V, 3)."""
        return interleaved(self.apply_c(components(verts)))

    def apply_c(self, vc: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` for component-major vertices vc: (3, B, V) float. Returns (3, B, V)."""
        vi, vj = gather(vc, self.edges.T).unbind(2)
        flow = self.weights.to(vc.dtype) * (vi - vj)  # (3, B, E)
        delta = scatter_add(torch.cat([flow, -flow], dim=-1), self.edges.T.reshape(-1), vc.shape[-1])
        return self.scale.to(vc.dtype) * delta

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
        size = (num_verts, num_verts)
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, size, check_invariants=True).coalesce()

    def to(self, device: torch.device | str) -> "Laplacian":
        """A copy on ``device``."""
        return Laplacian(self.edges.to(device), self.weights.to(device), self.scale.to(device))
