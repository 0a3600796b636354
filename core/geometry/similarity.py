"""Similarity alignment, numpy float64: of point sets (Umeyama), and of points onto a surface (ICP)."""

from __future__ import annotations

import numpy as np

# The ICP drops the worst tenth of its pairs each step and stops when their mean moves less than this.
ICP_TRIM = 0.1
ICP_ITERATIONS = 40
ICP_TOL_M = 1e-7


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


def as_trimesh(verts, tris):
    """A trimesh of the triangles as they are (no merging or reordering)."""
    import trimesh

    return trimesh.Trimesh(np.asarray(verts, np.float64), np.asarray(tris, np.int64), process=False)


def closest_points(mesh, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact closest points of ``points`` (n, 3) on ``mesh``: (points, distances, triangle ids)."""
    import trimesh

    return trimesh.proximity.closest_point(mesh, points)


def _rotation(w: np.ndarray) -> np.ndarray:
    """(3, 3) the rotation by the axis-angle vector ``w`` (3,) (Rodrigues)."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-15:
        return np.eye(3)
    k = w / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def icp_similarity(src: np.ndarray, target_mesh, trim: float = ICP_TRIM, iterations: int = ICP_ITERATIONS,
                   tol: float = ICP_TOL_M, weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray, int]:
    """(s, R (3, 3), t (3,), iterations): the similarity taking ``src`` (n, 3) onto the
    surface ``target_mesh`` (a trimesh). Each step pairs every point with its exact closest
    point on the surface, drops the worst ``trim`` of the pairs and solves the linearised
    point-to-plane similarity (rotation, scale about the centroid, translation), which
    slides along the surface far faster than point-to-point steps. ``weights`` (n,) weigh
    the pairs (e.g. the points' surface areas; the trim then drops the worst pairs holding
    ``trim`` of the weight); equal without. Starts from the identity:
    ``src`` must be roughly in the target's frame."""
    src = np.asarray(src, np.float64)
    w_all = None if weights is None else np.asarray(weights, np.float64)
    s, R, t = 1.0, np.eye(3), np.zeros(3)
    keep = max(7, int(round(len(src) * (1.0 - trim))))
    last, it = np.inf, 0
    for it in range(1, iterations + 1):
        moved = s * src @ R.T + t
        closest, dist, tri = closest_points(target_mesh, moved)
        order = np.argsort(dist)
        if w_all is None:
            order = order[:keep]
        else:  # the best pairs holding (1 - trim) of the weight
            share = np.cumsum(w_all[order]) / max(float(w_all.sum()), 1e-30)
            order = order[:max(7, int(np.searchsorted(share, 1.0 - trim)) + 1)]
        p, q, n = moved[order], closest[order], target_mesh.face_normals[tri[order]]
        w = None if w_all is None else w_all[order] / max(float(w_all[order].sum()), 1e-30)
        c = p.mean(0) if w is None else w @ p
        A = np.concatenate([np.cross(p - c, n), ((p - c) * n).sum(1, keepdims=True), n], axis=1)
        b = ((q - p) * n).sum(1)
        if w is not None:  # weighted least squares: each row scaled by the root of its weight
            A, b = A * np.sqrt(w)[:, None], b * np.sqrt(w)
        x = np.linalg.lstsq(A, b, rcond=None)[0]
        dR, ds = _rotation(x[:3]), 1.0 + x[3]
        # moved -> ds * dR (moved - c) + c + dt, folded into (s, R, t).
        s, R, t = ds * s, dR @ R, ds * dR @ (t - c) + c + x[4:]
        mean = float(dist[order].mean()) if w is None else float(w @ dist[order])
        if abs(last - mean) < tol:
            break
        last = mean
    return s, R, t, it
