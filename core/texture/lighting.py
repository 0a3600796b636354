"""Low-order spherical-harmonics lighting: fit it to a photo against the
rendered normals, and divide it out (shading removal).

Shading is fitted in linear light: ``I_c(p) = rho_c(p) * B(n(p)) . l_c`` with
B the 9 real SH basis functions (bands 0-2) of the world-space normal. With
one photo albedo and light are only known up to the light's scale (and on
the seen hemisphere band 0 mixes with band 2), so the albedo is defined as
the colour the surface would show if it faced the camera:
``rho_c = I_c * (B(n_cam) . l_c) / (B(n) . l_c)``, n_cam the direction
toward the camera.
"""

from __future__ import annotations

import math

import torch

SH_COEFFS = 9

MIN_FIT_COS = 0.25
"""Pixels whose normal is closer than this cosine to grazing are left out of the fit (normals unreliable)."""

ROBUST_ITERATIONS = 4
ROBUST_CLIP = 2.5
"""Robust refits drop pixels whose residual exceeds this many robust sigmas
(hair, brows, eyes, lips: albedo that is not the skin's)."""

BAND_RIDGE = (0.0, 0.005, 0.2)
"""Ridge on bands 0, 1, 2, relative to the data term's mean diagonal. Seen from one side, a
face's normals span less than a hemisphere and band 2 trades off against band 0 and the
albedo; the ridge keeps the light smooth and its ambient level positive."""

MIN_RELATIVE_SHADING = 0.2
"""Shading is clamped to this fraction of the ambient level before dividing (deep shadows stay finite)."""


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Real SH basis, bands 0-2. normals: (..., 3) unit float. Returns (..., 9)."""
    x, y, z = normals.unbind(-1)
    c0 = 0.5 * math.sqrt(1.0 / math.pi)
    c1 = math.sqrt(3.0 / (4.0 * math.pi))
    c2 = 0.5 * math.sqrt(15.0 / math.pi)
    c3 = 0.25 * math.sqrt(5.0 / math.pi)
    c4 = 0.25 * math.sqrt(15.0 / math.pi)
    return torch.stack(
        [torch.full_like(x, c0), c1 * y, c1 * z, c1 * x,
         c2 * x * y, c2 * y * z, c3 * (3.0 * z * z - 1.0), c2 * x * z, c4 * (x * x - y * y)],
        -1,
    )


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] (any shape) -> linear light."""
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """Linear light (any shape, clamped to [0, 1]) -> sRGB-encoded values."""
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp(min=1e-12) ** (1.0 / 2.4) - 0.055)


def fit_sh_lighting(colors: torch.Tensor, normals: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares SH light per channel, robust to albedo outliers.

    colors: (P, 3) float linear-light pixel colours; normals: (P, 3) unit
    world normals at those pixels; weights: (P,) float or None.
    Returns light (9, 3): ``shading_c(n) = sh_basis(n) @ light[:, c]``.
    """
    if colors.ndim != 2 or colors.shape[1] != 3 or normals.shape != colors.shape:
        raise ValueError(f"expected colors and normals (P, 3), got {tuple(colors.shape)}, {tuple(normals.shape)}")
    if colors.shape[0] < 4 * SH_COEFFS:
        raise ValueError(f"need at least {4 * SH_COEFFS} lit pixels to fit the lighting, got {colors.shape[0]}")
    dt = torch.float64
    B = sh_basis(normals.to(dt))
    y = colors.to(dt)
    w = torch.ones(y.shape[0], dtype=dt, device=y.device) if weights is None else weights.to(dt).clamp(min=0)
    ridge = torch.tensor([BAND_RIDGE[0]] + [BAND_RIDGE[1]] * 3 + [BAND_RIDGE[2]] * 5, dtype=dt, device=y.device)
    keep = w > 0
    light = torch.zeros(SH_COEFFS, 3, dtype=dt, device=y.device)
    for _ in range(ROBUST_ITERATIONS):
        wk = w * keep
        A = (B * wk[:, None]).T @ B
        A = A + torch.diag(ridge * A.diagonal().mean())
        light = torch.linalg.solve(A, (B * wk[:, None]).T @ y)
        # Relative residuals: albedo that differs from the skin's is a ratio, not an offset.
        shade = (B @ light).clamp(min=1e-6)
        r = (y / shade - 1.0).abs().mean(1)
        sigma = 1.4826 * r[keep].median().clamp(min=1e-4)
        keep = (r <= ROBUST_CLIP * sigma) & (w > 0)
    return light.to(colors.dtype)


def relative_shading(normals: torch.Tensor, light: torch.Tensor, facing: torch.Tensor,
                     floor: float = MIN_RELATIVE_SHADING) -> torch.Tensor:
    """Shading relative to that of a surface facing the camera, clamped below.

    normals: (P, 3) unit world normals; light: (9, 3); facing: (3,) unit
    world direction toward the camera. Returns (P, 3): 1 where the surface
    is lit like one facing the camera.
    """
    ref = (sh_basis(facing.to(light.dtype)[None]) @ light)[0].clamp(min=1e-6)  # (3,)
    return (sh_basis(normals.to(light.dtype)) @ light / ref).clamp(min=floor)


def facing_normal(R: torch.Tensor) -> torch.Tensor:
    """R: (3, 3) world-to-camera rotation -> (3,) world unit normal of a surface facing the camera."""
    return -R[2]
