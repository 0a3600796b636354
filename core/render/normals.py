"""Smooth vertex normals."""

from __future__ import annotations

import torch

_EPS = 1e-12


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised face normals (twice the area, right-hand winding).

    verts: (B, V, 3) float; faces: (F, 3) int64. Returns (B, F, 3).
    """
    B, V = verts.shape[:2]
    # Flat index_select: its backward (index_add on dim 0) is the fast path on CPU.
    idx = faces.t()[:, None, :] + (torch.arange(B, device=faces.device) * V)[None, :, None]  # (3, B, F)
    flat = verts.reshape(B * V, 3)
    v0, v1, v2 = (flat.index_select(0, idx[k].reshape(-1)).view(B, -1, 3) for k in range(3))
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
    # Accumulate along dim 0 of a (V, B*3) layout: index_add's fast path on CPU.
    fn = fn.permute(1, 0, 2).reshape(-1, B * 3)
    acc = torch.zeros(V, B * 3, dtype=verts.dtype, device=verts.device)
    for k in range(3):
        acc = acc.index_add(0, faces[:, k], fn)
    return safe_normalize(acc.view(V, B, 3).permute(1, 0, 2))
