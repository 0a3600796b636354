"""Smooth vertex normals."""

from __future__ import annotations

import torch

_EPS = 1e-12


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised face normals (twice the area, right-hand winding).

    verts: (B, V, 3) float; faces: (F, 3) int64. Returns (B, F, 3).
    """
    v0, v1, v2 = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def safe_normalize(x: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """x / |x| along the last axis; zero vectors stay zero with finite gradients."""
    sq = (x * x).sum(-1, keepdim=True)
    return x * torch.rsqrt(sq.clamp(min=eps * eps))


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    verts: (B, V, 3) float; faces: (F, 3) int64. Returns (B, V, 3); vertices
    touching only degenerate faces (or none) get the zero vector.
    """
    fn = face_normals(verts, faces)
    B, V = verts.shape[:2]
    acc = torch.zeros(B, V, 3, dtype=verts.dtype, device=verts.device)
    idx = faces.reshape(-1)
    acc = acc.index_add(1, idx, fn[:, :, None].expand(-1, -1, 3, -1).reshape(B, -1, 3))
    return safe_normalize(acc)
