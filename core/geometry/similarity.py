"""Similarity alignment of point sets (Umeyama), numpy float64."""

from __future__ import annotations

import numpy as np


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R (3, 3), t (3,)) minimising |s R src + t - dst|^2. src, dst: (n, 3) float."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    R = u @ D @ vt
    s = float(np.trace(np.diag(sv) @ D) / max((a ** 2).sum(1).mean(), 1e-20))
    return s, R, mu_d - s * R @ mu_s


def similarity_align(src: np.ndarray, dst: np.ndarray, fit_ids: np.ndarray | None = None) -> np.ndarray:
    """``src`` (n, 3) moved by the similarity that best maps ``src[fit_ids]`` onto ``dst[fit_ids]``."""
    ids = slice(None) if fit_ids is None else fit_ids
    s, R, t = similarity_transform(src[ids], dst[ids])
    return s * np.asarray(src, dtype=np.float64) @ R.T + t
