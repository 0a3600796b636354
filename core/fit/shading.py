"""The shading term: how well the current surface, lit by the best
low-order light, explains the photo's skin pixels (analysis by synthesis).

Per view, on the skin mask at the stage's resolution:
``I(p) ≈ B(n(p)) · l`` with I the photo's grey level in linear light, n the
rendered camera-space normal, B the 9 real spherical harmonics (bands 0-2,
``core.texture.lighting.sh_basis``) and l the light, which also carries the
skin's albedo (one tone over the mask). l is the weighted least-squares
solution for the current normals (closed form, no gradient: at the optimum
its derivative is zero), refitted with outliers dropped (freckles, cast
shadows, hair, glasses, specular highlights). The loss is the mean robust
(Charbonnier) residual relative to the mask's mean level, so photos of any
exposure weigh the same; its gradient reaches the vertices through the
rendered normals. Everything stays on the device (no host synchronisation).
"""

from __future__ import annotations

import torch

from core.texture.lighting import BAND_RIDGE, SH_COEFFS, sh_basis

# Rec. 709 luma weights: grey level of a linear-light RGB photo.
LUMA = (0.2126, 0.7152, 0.0722)
ROBUST_ITERATIONS = 2
# Pixels whose residual exceeds this many robust sigmas are dropped from the light and the loss.
ROBUST_CLIP = 3.0
# Charbonnier smoothing of the relative residual (≈ L2 below, L1 above).
CHARBONNIER_EPS = 0.02


def grey(image: torch.Tensor) -> torch.Tensor:
    """(..., 3) linear RGB -> (...) grey level."""
    return image @ torch.tensor(LUMA, dtype=image.dtype, device=image.device)


def inliers(residual: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (P,) kept only where |residual| (P,) is within ``ROBUST_CLIP`` robust sigmas
    (1.4826 x the median absolute residual over the weighted pixels)."""
    r = residual.abs()
    sigma = 1.4826 * torch.where(weight > 0, r, torch.full_like(r, float("nan"))).nanmedian()
    return weight * (r <= ROBUST_CLIP * sigma.clamp_min(1e-6)).to(weight.dtype)


def fit_light(basis: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust weighted least-squares light.

    basis: (P, 9) SH basis (no gradient needed); target: (P,) grey levels;
    weight: (P,) float in [0, 1] (0 outside the mask).
    Returns light (9,) and the inlier weights (P,).
    """
    dt = basis.dtype
    ridge = torch.tensor([BAND_RIDGE[0]] + [BAND_RIDGE[1]] * 3 + [BAND_RIDGE[2]] * 5, dtype=dt, device=basis.device)
    keep = weight
    light = basis.new_zeros(SH_COEFFS)
    for _ in range(ROBUST_ITERATIONS + 1):
        A = (basis * keep[:, None]).T @ basis
        A = A + torch.diag(ridge * A.diagonal().mean().clamp_min(1e-12))
        A = A + 1e-9 * torch.eye(SH_COEFFS, dtype=dt, device=basis.device)
        light = torch.linalg.solve(A, (basis * keep[:, None]).T @ target)
        keep = inliers(target - basis @ light, weight)
    return light, keep


def view_light(normals: torch.Tensor, image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The light (9,) that best explains ``image`` on ``normals`` (shapes as in ``shading_loss``)."""
    with torch.no_grad():
        return fit_light(sh_basis(normals).reshape(-1, SH_COEFFS), image.reshape(-1), weight.reshape(-1))[0]


def shading_loss(normals: torch.Tensor, image: torch.Tensor, weight: torch.Tensor,
                 light: torch.Tensor | None = None) -> torch.Tensor:
    """normals: (h, w, 3) rendered camera-space unit normals; image: (h, w) grey
    level; weight: (h, w) float mask (skin ∩ rendered coverage); light: (9,) a
    light held fixed, or None to fit it to these normals. Returns a scalar."""
    basis = sh_basis(normals).reshape(-1, SH_COEFFS)
    y = image.reshape(-1)
    w = weight.reshape(-1)
    with torch.no_grad():
        if light is None:
            light, keep = fit_light(basis.detach(), y, w)
        else:
            keep = inliers(y - basis.detach() @ light, w)
        level = (y * w).sum() / w.sum().clamp_min(1.0)
    r = (y - basis @ light) / level.clamp_min(1e-6)
    rho = torch.sqrt(r * r + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS
    return (keep * rho).sum() / keep.sum().clamp_min(1.0)
