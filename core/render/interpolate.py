"""Per-pixel interpolation of vertex attributes through barycentrics."""

from __future__ import annotations

import torch

from .rasterize import Fragments


def interpolate(attrs: torch.Tensor, faces: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    """Interpolate vertex attributes over the covered pixels.

    attrs: (B, V, C) float (B may be 1 to share attributes across the batch).
    faces: (F, 3) int64. Returns (B, H, W, C), zero on background, with
    gradients to ``attrs`` and (through barycentrics) to the vertices.
    """
    B, H, W = fragments.face_id.shape
    if attrs.ndim != 3 or attrs.shape[0] not in (1, B):
        raise ValueError(f"attrs must be (B, V, C) with B in (1, {B}), got {tuple(attrs.shape)}")
    V, C = attrs.shape[1:]
    batch = torch.div(fragments.pixel_index, H * W, rounding_mode="floor")
    if attrs.shape[0] == 1:
        batch = torch.zeros_like(batch)
    corner = (faces.index_select(0, fragments.pixel_face) + (batch * V)[:, None]).t()  # (3, P)
    flat = attrs.reshape(-1, C)
    bary = fragments.pixel_bary
    values = sum(bary[:, k : k + 1] * flat.index_select(0, corner[k]) for k in range(3))
    out = torch.zeros(B * H * W, C, dtype=values.dtype, device=values.device)
    return out.index_copy(0, fragments.pixel_index, values).view(B, H, W, C)
