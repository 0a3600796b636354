"""Normal consistency (paper §4.2.1): masked L1 between predicted and rendered normal maps."""

from __future__ import annotations

import torch

from ..geometry.safe import safe_divide


def normal_consistency_map(predicted: torch.Tensor, rendered: torch.Tensor) -> torch.Tensor:
    """Per-pixel L1 distance |N(I) - N^(V)|_1 summed over the three components.

    predicted, rendered: (B, H, W, 3) float camera-space normal maps (unit
    vectors, DESIGN.md convention). Returns (B, H, W), dimensionless in [0, 2*sqrt(3)].
    """
    if predicted.shape != rendered.shape or predicted.dim() != 4 or predicted.shape[-1] != 3:
        raise ValueError(
            f"predicted and rendered normal maps must both be (B, H, W, 3), got {tuple(predicted.shape)} "
            f"and {tuple(rendered.shape)}"
        )
    return (predicted - rendered).abs().sum(-1)


def normal_consistency_loss(predicted: torch.Tensor, rendered: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_n = sum_p m_p |N(I)_p - N^(V)_p|_1 / sum_p m_p over all pixels of the batch.

    predicted: (B, H, W, 3) float normals from the photo. rendered: (B, H, W, 3)
    float normals of the mesh. mask: (B, H, W) bool or float weights in [0, 1]
    (e.g. coverage x face region x prediction confidence). Returns a scalar,
    dimensionless; 0 when the mask is empty.
    """
    per_pixel = normal_consistency_map(predicted, rendered)
    if mask.shape != per_pixel.shape:
        raise ValueError(f"mask must be (B, H, W) = {tuple(per_pixel.shape)}, got {tuple(mask.shape)}")
    weight = mask.to(per_pixel.dtype)
    return safe_divide((weight * per_pixel).sum(), weight.sum())
