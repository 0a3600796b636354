"""Left/right symmetry of the template: vertex mirror, joint mirror, controller mirror."""

from __future__ import annotations

import numpy as np

from .model import Template

MIRROR_SIGN = np.array([-1.0, 1.0, 1.0])  # mirror plane x = 0 (the subject's left is +X)


def mirror_joint_names(names: list[str]) -> np.ndarray:
    """(J,) int64 index of each joint's mirror by Blender's .L/.R naming (itself when unsided)."""
    index = {n: i for i, n in enumerate(names)}
    swap = {".L": ".R", ".R": ".L"}
    out = np.arange(len(names))
    for i, n in enumerate(names):
        if n[-2:] in swap:
            out[i] = index.get(n[:-2] + swap[n[-2:]], i)
    return out


def match_mirrored_rows(rows: np.ndarray, mirrored: np.ndarray, rel_tol: float) -> np.ndarray:
    """Pair each row with the row closest to its mirror image.

    rows, mirrored: (M, D) float64, ``mirrored[i]`` is row i mirrored. Returns
    (M,) int64 partner of each row, or -1 where the best match has relative
    error above ``rel_tol`` or the pairing is not mutual. All-zero rows get -1.
    """
    sq = (rows * rows).sum(1)
    dist = (mirrored * mirrored).sum(1)[:, None] + sq[None, :] - 2 * mirrored @ rows.T  # (M, M)
    best = dist.argmin(1)
    err = np.sqrt(np.maximum(dist[np.arange(len(rows)), best], 0))
    ok = (sq > 0) & (err <= rel_tol * np.sqrt(np.maximum(sq, 1e-300)))
    partner = np.where(ok, best, -1)
    mutual = np.zeros(len(rows), bool)
    mutual[ok] = partner[partner[ok]] == np.flatnonzero(ok)
    return np.where(mutual, partner, -1)


def controller_mirror(t: Template, rel_tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """The mirror of each controller, from its vertex deltas.

    Returns (partner (R,) int64, flip (R,) bool): mirroring a setting maps
    r_k to r_partner[k] (negated where flip, e.g. a sideways translation is
    its own mirror with the sign flipped). partner is -1 for a controller
    with no mirror (an asymmetric one). Controllers without vertex deltas are
    their own mirror.
    """
    r = t.num_controllers
    rows = t.ctrl_basis.reshape(2 * r, -1).astype(np.float64)
    mirrored = (t.ctrl_basis[:, :, t.mirror] * MIRROR_SIGN).reshape(2 * r, -1)
    pair = match_mirrored_rows(rows, mirrored, rel_tol)
    pos = pair[0::2]
    partner = np.where(pos >= 0, pos // 2, -1)
    flip = (pos >= 0) & (pos % 2 == 1)
    silent = ~t.ctrl_basis[:, 0].any((1, 2))
    partner[silent] = np.flatnonzero(silent)
    return partner.astype(np.int64), flip


def mirror_setting(controllers: np.ndarray, partner: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """controllers: (..., R) -> the mirrored setting (..., R). Requires partner >= 0 everywhere."""
    if (partner < 0).any():
        raise ValueError("some controllers have no mirror partner")
    sign = np.where(flip, -1.0, 1.0)
    out = np.empty_like(controllers)
    out[..., partner] = controllers * sign
    return out
