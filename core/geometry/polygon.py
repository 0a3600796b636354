"""Closed plane polygons given as (K, 2) corner lists: which points lie inside, and how far
points lie from the outline. numpy; the corners in order around the outline."""

from __future__ import annotations

import numpy as np


def inside_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """(M,) bool: points (M, 2) inside the polygon poly (K, 2) by the even-odd rule (a ray toward
    +x crosses the outline an odd number of times)."""
    p = np.asarray(points, np.float64)
    a = np.asarray(poly, np.float64)
    b = np.roll(a, -1, axis=0)
    x, y = p[:, None, 0], p[:, None, 1]
    straddles = (a[None, :, 1] > y) != (b[None, :, 1] > y)
    dy = b[:, 1] - a[:, 1]
    dy = np.where(np.abs(dy) < 1e-300, 1e-300, dy)
    x_at = a[None, :, 0] + (y - a[None, :, 1]) * ((b[:, 0] - a[:, 0]) / dy)[None]
    return ((straddles & (x < x_at)).sum(1) % 2) == 1


def distance_to_outline(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """(M,) distance from points (M, 2) to the nearest point of the closed outline poly (K, 2)."""
    q = np.asarray(points, np.float64)[:, None]
    a = np.asarray(poly, np.float64)
    ab = np.roll(a, -1, axis=0) - a
    s = np.clip(((q - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300)[None], 0.0, 1.0)
    return np.linalg.norm(q - (a[None] + s[..., None] * ab[None]), axis=-1).min(1)
