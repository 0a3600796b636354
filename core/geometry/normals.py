"""Triangle normals and areas, area-weighted vertex normals: the torch home of mesh normals."""

from __future__ import annotations

import torch

from .indexing import gather
from .safe import normalize_clamped, safe_norm3, safe_normalize3
from .vectors import components, cross, interleaved


def face_cross_c(vc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised normals ``(v1 - v0) x (v2 - v0)`` (length = twice the area), component-major.

    vc: (3, B, V) float (:func:`~core.geometry.vectors.components`). faces: (F, 3) int64. Returns (3, B, F).
    """
    v0, v1, v2 = gather(vc, faces.T).unbind(2)
    return cross(v1 - v0, v2 - v0)


def face_normals_c(vc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals, component-major; a degenerate triangle gets 0. vc: (3, B, V). Returns (3, B, F)."""
    return safe_normalize3(face_cross_c(vc, faces))


def face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised triangle normals. verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F, 3)."""
    return interleaved(face_cross_c(components(verts), faces))


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit triangle normals; a degenerate triangle gets the zero vector.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F, 3).
    """
    return interleaved(face_normals_c(components(verts), faces))


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas in squared mesh units.

    verts: (B, V, 3) float. faces: (F, 3) int64. Returns (B, F).
    """
    return 0.5 * safe_norm3(face_cross_c(components(verts), faces))


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (the renderer's and the fitter's).

    verts: (B, V, 3) float; faces: (F, 3) int64. Returns (B, V, 3); vertices
    touching only degenerate faces (or none) get the zero vector.
    """
    B, V = verts.shape[:2]
    # Flat index_select: its backward (index_add on dim 0) is the fast path on CPU. The
    # fused torch.linalg.cross rounds float32 differently from face_cross; kept as it was.
    idx = faces.t()[:, None, :] + (torch.arange(B, device=faces.device) * V)[None, :, None]  # (3, B, F)
    flat = verts.reshape(B * V, 3)
    v0, v1, v2 = (flat.index_select(0, idx[k].reshape(-1)).view(B, -1, 3) for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    # Accumulate along dim 0 of a (V, B*3) layout: index_add's fast path on CPU.
    fn = fn.permute(1, 0, 2).reshape(-1, B * 3)
    acc = torch.zeros(V, B * 3, dtype=verts.dtype, device=verts.device)
    for k in range(3):
        acc = acc.index_add(0, faces[:, k], fn)
    return normalize_clamped(acc.view(V, B, 3).permute(1, 0, 2))
