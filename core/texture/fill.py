"""Hole filling in UV space: dual-mask (screened) Poisson blending with a
guide texture, and padding beyond the UV islands.

Two masks: the *hard seam mask* (texels inside a UV island) decides which
texels are coupled, so colour never leaks across an island border; the
*soft mask* (observed texels, eroded 3 x 3 and feathered by confidence)
blends the photo into the Poisson solution, so the visible region fades
into the fill instead of ending at a step.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp

from core.geometry.sparse_solve import spd_solve

SCREENING_LENGTH = 0.05
"""Far from any observation the fill relaxes to the guide texture over about
this fraction of the map size (screened Poisson: (Δ - λ) f = Δg - λ g)."""

DIRECT_MAX_UNKNOWNS = 100_000
"""Larger fills are solved coarse-to-fine (a sparse factorisation grows faster than the map)."""

REFINE_BAND = 12
"""Texels next to the data that are re-solved at full resolution after the coarse fill."""

SOFT_FEATHER = 2.0
"""Gaussian sigma (texels at 1024², scaled with the map) of the soft mask's feathering."""


def soft_mask(observed: np.ndarray, confidence: np.ndarray, island: np.ndarray) -> np.ndarray:
    """The soft interior mask.

    observed: (S, S) bool texels seen by some view; confidence: (S, S) float
    in [0, 1]; island: (S, S) bool hard seam mask. Returns (S, S) float32 in
    [0, 1], zero outside the eroded observed region.
    """
    # Island borders are seams, not the edge of what was seen: only unseen island texels erode.
    eroded = ndi.binary_erosion(observed | ~island, structure=np.ones((3, 3), bool), border_value=1) & observed
    sigma = SOFT_FEATHER * observed.shape[0] / 1024.0
    soft = (eroded * np.clip(confidence, 0.0, 1.0)).astype(np.float32)
    if sigma > 0.3:
        # Normalised blur over the islands only, so the feathering does not fade at seams.
        inside = island.astype(np.float32)
        num = cv2.GaussianBlur(soft * inside, (0, 0), sigma)
        den = cv2.GaussianBlur(inside, (0, 0), sigma)
        soft = np.minimum(num / np.maximum(den, 1e-6), eroded)
    return (soft * island).astype(np.float32)


def poisson_fill(
    values: np.ndarray, known: np.ndarray, island: np.ndarray, guide: np.ndarray, screening: float | None = None
) -> np.ndarray:
    """Fill the unknown island texels so their gradients follow the guide.

    values: (S, S, C) float, trusted where ``known``; known: (S, S) bool;
    island: (S, S) bool hard seam mask (neighbours couple only inside it);
    guide: (S, S, C) float template texture (e.g. a neutral skin tone).
    Solves ``(L + λ) f = L g + λ g`` on unknown texels with ``f = values`` on
    known ones (Dirichlet), L the island graph Laplacian, λ per texel² (by
    default from ``SCREENING_LENGTH``). Returns (S, S, C) float32:
    ``values`` on known texels, the fill on the rest of the islands,
    ``guide`` elsewhere.
    """
    S = values.shape[0]
    if values.shape[:2] != (S, S) or known.shape != (S, S) or island.shape != (S, S) or guide.shape != values.shape:
        raise ValueError(f"expected square maps of one size; got values {values.shape}, known {known.shape}, "
                         f"island {island.shape}, guide {guide.shape}")
    lam = (1.0 / (SCREENING_LENGTH * S)) ** 2 if screening is None else float(screening)
    return _solve(values.astype(np.float64), known & island, island, guide.astype(np.float64), lam).astype(np.float32)


def _solve(values, known, island, guide, lam):
    out = np.where(island[..., None], values, guide)
    unknown = island & ~known
    if not unknown.any():
        return out
    S = island.shape[0]
    if unknown.sum() <= DIRECT_MAX_UNKNOWNS or S % 2:
        return _solve_direct(out, island, guide, unknown, lam)
    # Coarse-to-fine: the half-resolution fill (screening 4x per coarse texel²) is smooth away
    # from the data; only a band next to the data is solved again at this resolution, with the
    # upsampled coarse fill as the band's outer boundary.
    small = _downsample(values, known, island, guide)
    coarse = _solve(*small, 4.0 * lam)
    inside_c = small[2].astype(np.float32)
    num = cv2.resize((coarse * inside_c[..., None]).astype(np.float32), (S, S), interpolation=cv2.INTER_LINEAR)
    den = cv2.resize(inside_c, (S, S), interpolation=cv2.INTER_LINEAR)
    up = np.where((den > 1e-6)[..., None], num / np.maximum(den, 1e-6)[..., None], guide)
    near = _distance_to(known) <= REFINE_BAND
    band = unknown & near
    out[unknown & ~near] = up[unknown & ~near]
    return _solve_direct(out, island, guide, band, lam)


def _solve_direct(out, island, guide, unknown, lam):
    """Sparse direct solve for the ``unknown`` texels (a subset of ``island``); the other island
    texels hold their values in ``out`` (Dirichlet). Texels couple to their 4-neighbours inside the
    island (the island's graph Laplacian L), and only the unknown texels' rows of it are built, so a
    thin band next to the data costs what the band does, not what the whole map does."""
    S, C = island.shape[0], out.shape[-1]
    flat_island, flat_out, flat_g = island.reshape(-1), out.reshape(-1, C), guide.reshape(-1, C)
    U = np.flatnonzero(unknown)
    n = U.size
    pos = np.full(island.size, -1, dtype=np.int64)
    pos[U] = np.arange(n)
    r, c = np.divmod(U, S)
    deg = np.zeros(n)
    guide_sum = np.zeros((n, C))
    known_sum = np.zeros((n, C))
    rows, cols = [], []
    for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        rr, cc = r + dr, c + dc
        j = np.where((rr >= 0) & (rr < S) & (cc >= 0) & (cc < S), rr * S + cc, -1)
        linked = (j >= 0) & flat_island[np.maximum(j, 0)]
        j = np.maximum(j, 0)
        deg += linked
        guide_sum += np.where(linked[:, None], flat_g[j], 0.0)
        free = linked & (pos[j] >= 0)
        known_sum += np.where((linked & ~free)[:, None], flat_out[j], 0.0)
        rows.append(np.flatnonzero(free))
        cols.append(pos[j[free]])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    # (L + lam) f = L g + lam g on the unknown rows, the known neighbours' values moved to the right.
    A = sp.csc_matrix((np.full(rows.size, -1.0), (rows, cols)), shape=(n, n)) + sp.diags(deg + lam, format="csc")
    rhs = (deg + lam)[:, None] * flat_g[U] - guide_sum + known_sum
    flat_out[U] = spd_solve(A, rhs)
    return out


def _distance_to(mask):
    """(S, S) float32 exact Euclidean distance (texels) from each texel to the nearest ``mask`` texel."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _downsample(values, known, island, guide):
    """2 x 2 blocks: island where any texel is, known where any texel is (mean of the known ones)."""
    S = values.shape[0] // 2
    # Area resampling to exactly half the size is the 2 x 2 block mean.
    half = lambda a: cv2.resize(a, (S, S), interpolation=cv2.INTER_AREA)  # noqa: E731
    k = known.astype(np.float64)
    ksum = 4.0 * half(k)
    v = 4.0 * half(values * k[..., None]) / np.maximum(ksum, 1.0)[..., None]
    return v, ksum > 0, half(island.astype(np.float64)) > 0, half(guide)


def pad_islands(image: np.ndarray, island: np.ndarray) -> np.ndarray:
    """Copy each texel outside the islands from the nearest island texel.

    image: (S, S, C); island: (S, S) bool. Bilinear lookups and mipmaps at
    island borders then never reach unrelated colours.
    """
    if island.all() or not island.any():
        return image
    _, (ri, ci) = ndi.distance_transform_edt(~island, return_indices=True)
    return image[ri, ci]
