"""Detail normal map from image gradients, in the template's tangent space.

The albedo's luminance is read as a height field (dark pores and creases
lie deeper). Sobel gradients on the full-resolution map (fine) and on a
4x-reduced copy (coarse) each give a normal ``n ∝ (-k gx_u, -k gy_v, 1)``
(gradients along +u and +v: tangent and bitangent of the UV layout, what
Blender's MikkTSpace normal maps use, OpenGL convention: green = +v). The
two are fused with a soft-light blend on their encoded x, y channels: the
coarse map sets the large-scale tilt, the fine map modulates it.
"""

from __future__ import annotations

import cv2
import numpy as np

FINE_STRENGTH = 6.0
"""Height per unit luminance, in texels of the fine map (tilt of fine detail)."""

COARSE_STRENGTH = 2.0
"""Height per unit luminance, in texels of the coarse map."""

COARSE_FACTOR = 4

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _sobel_normals(height: np.ndarray, strength: float) -> np.ndarray:
    """height: (H, W) float32 -> tangent-space unit normals (H, W, 3) float32."""
    # Sobel's 3x3 kernel sums 8x the central difference per texel.
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8.0
    g_row = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8.0
    gv = -g_row  # rows grow downward, v grows upward
    n = np.stack([-strength * gx, -strength * gv, np.ones_like(gx)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def soft_light(base: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """Soft-light blend (Pegtop form) of values in [0, 1]: ``(1 - 2b) a² + 2 b a``."""
    return (1.0 - 2.0 * blend) * base * base + 2.0 * blend * base


def detail_normals(albedo: np.ndarray, island: np.ndarray) -> np.ndarray:
    """Tangent-space detail normal map.

    albedo: (S, S, 3) float in [0, 1] (sRGB); island: (S, S) bool.
    Returns (S, S, 3) float32 unit normals; (0, 0, 1) outside the islands.
    """
    if albedo.ndim != 3 or albedo.shape[2] != 3 or island.shape != albedo.shape[:2]:
        raise ValueError(f"expected albedo (S, S, 3) and island (S, S), got {albedo.shape}, {island.shape}")
    S = albedo.shape[0]
    luma = (albedo.astype(np.float32) @ LUMA).astype(np.float32)
    fine = _sobel_normals(luma, FINE_STRENGTH)
    small = cv2.resize(luma, (max(S // COARSE_FACTOR, 1),) * 2, interpolation=cv2.INTER_AREA)
    coarse_small = _sobel_normals(small, COARSE_STRENGTH)
    coarse = cv2.resize(coarse_small, (S, S), interpolation=cv2.INTER_LINEAR)
    xy = soft_light(coarse[..., :2] * 0.5 + 0.5, fine[..., :2] * 0.5 + 0.5) * 2.0 - 1.0
    xy = np.clip(xy, -0.95, 0.95)
    z = np.sqrt(np.clip(1.0 - (xy * xy).sum(-1, keepdims=True), 0.05, 1.0))
    n = np.concatenate([xy, z], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~island] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)
