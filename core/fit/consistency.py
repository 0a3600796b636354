"""Agreement between photos: a point of the face shows the same colour in
every photo that sees it.

Points are fixed barycentric samples on the face's triangles, so they move
with the mesh. Each photo's colour at a point's projection is read
bilinearly (its gradient moves the projection along the image gradient,
hence the point in depth: two photos triangulate it, as in multi-view
stereo, with no model of light or albedo). A photo's colours are divided by
its mean over the points seen by at least two photos (exposure and white
balance differ between photos), then each colour is compared with the
points' mean over the photos that see it (Charbonnier on the relative
difference). Which photo sees which point, and how squarely, is decided
once per stage (``visibility_weights``) without gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Barycentric samples per triangle: its centroid and a point toward each corner.
SAMPLE_BARY = np.array([[1 / 3, 1 / 3, 1 / 3], [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
# A photo sees a point squarely from this cosine between its normal and the direction to the camera.
FULL_WEIGHT_COS = 0.5
# Points seen at grazing angles (below this cosine) do not count: their colour smears.
MIN_COS = 0.2
CHARBONNIER_EPS = 0.02


def face_samples(tris: np.ndarray, face_verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tri_ids (S,), bary (S, 3)): the samples on triangles whose corners all lie in ``face_verts``."""
    inside = np.zeros(int(tris.max()) + 1, bool)
    inside[np.asarray(face_verts)] = True
    ids = np.flatnonzero(inside[tris].all(1))
    tri_ids = np.repeat(ids, len(SAMPLE_BARY))
    bary = np.tile(SAMPLE_BARY, (len(ids), 1))
    return tri_ids, bary


def sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """image: (h, w, C); uv: (S, 2) pixels (centres at +0.5). Returns (S, C), bilinear, zero outside."""
    return sample_images(image[None], uv[None])[0]


def sample_images(images: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """``sample_image`` for a stack of images of one size: images (G, h, w, C), uv (G, S, 2). Returns (G, S, C)."""
    h, w = images.shape[1:3]
    grid = torch.stack([2.0 * uv[..., 0] / w - 1.0, 2.0 * uv[..., 1] / h - 1.0], -1)
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid[:, None], mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def facing_weights(points: torch.Tensor, normals: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """points, normals: (S, 3); centres: (V, 3) camera centres. Returns (V, S) in [0, 1]:
    0 below ``MIN_COS`` between the normal and the direction to the camera, 1 from ``FULL_WEIGHT_COS``."""
    to_cam = centres[:, None, :] - points[None]
    cos = (to_cam * normals[None]).sum(-1) / to_cam.norm(dim=-1).clamp_min(1e-9)
    return ((cos - MIN_COS) / (FULL_WEIGHT_COS - MIN_COS)).clamp(0.0, 1.0)


def consistency_loss(colours: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """colours: (V, S, C) each photo's colour at each point; weights: (V, S) how well
    each photo sees each point (0: not at all). Returns a scalar."""
    seen = (weights > 0).to(weights.dtype)
    shared = (seen.sum(0) >= 2).to(weights.dtype)  # (S,) points at least two photos see
    w = weights * shared[None]
    gain = (w[..., None] * colours).sum(1) / w.sum(1)[:, None].clamp_min(1e-9)  # (V, C)
    rel = colours / gain[:, None, :].clamp_min(1e-6)
    mean = (w[..., None] * rel).sum(0) / w.sum(0)[:, None].clamp_min(1e-9)  # (S, C)
    r = rel - mean[None]
    rho = torch.sqrt(r * r + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS
    return (w[..., None] * rho).sum() / (w.sum() * colours.shape[-1]).clamp_min(1.0)
