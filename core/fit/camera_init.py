"""Camera initialisation from 2D-3D landmark correspondences (PnP).

A scaled-orthographic solution (affine fit, rows orthonormalised) gives the
rotation and distance, then Levenberg-Marquardt refines a full perspective
camera for each focal length in a small scan; the focal with the lowest
reprojection error wins. The rig stage optimises focal and pose further, so
this only has to land in the right basin. Conventions: OpenCV cameras
(x right, y down, z forward), world-to-camera x_c = R x_w + t, pixels with
centre at +0.5 (bridge.conventions). ``initial_cameras`` runs it per view on
the neutral template's embedded landmarks: where every fit starts.
"""

from __future__ import annotations

import numpy as np
import torch

from core.geometry.camera import Cameras, axis_angle_to_matrix
from core.geometry.mesh_layout import surface_points
from core.template import LMK_SURFACE, TemplateModel

from .observations import ViewObservation


def _affine_init(X: np.ndarray, x: np.ndarray, f: float, c: np.ndarray):
    """Scaled orthographic pose: x - mean(x) ~ s * R[:2] (X - mean(X))."""
    Xc, xc = X - X.mean(0), x - x.mean(0)
    M, *_ = np.linalg.lstsq(Xc, xc, rcond=None)  # (3, 2)
    A = M.T
    u, _, vt = np.linalg.svd(A, full_matrices=False)
    r12 = u @ vt  # nearest matrix with orthonormal rows
    s = np.linalg.norm(A, axis=1).mean()
    R = np.vstack([r12, np.cross(r12[0], r12[1])])
    if np.linalg.det(R) < 0:
        R[2] *= -1
    tz = f / max(s, 1e-9)
    mean_uv = x.mean(0)
    txy = (mean_uv - c) * tz / f - (R @ X.mean(0))[:2]
    t = np.array([txy[0], txy[1], tz - (R @ X.mean(0))[2]])
    return R, t


def _refine(X, x, K, R, t, size, iterations=30):
    """Levenberg-Marquardt on (rotation update, translation), numeric Jacobian.

    X (L, 3), x (L, 2), K, R (3, 3), t (3,) float64; size (W, H). The Jacobian's six
    perturbed cameras are projected as one batch.
    """
    params = np.zeros(6)
    points = torch.from_numpy(X)[None]
    K_t, base_R = torch.from_numpy(K)[None], torch.from_numpy(R)

    def cameras(p: np.ndarray) -> Cameras:
        """p (P, 6) updates -> P cameras."""
        rot = axis_angle_to_matrix(torch.from_numpy(p[:, :3])) @ base_R
        return Cameras(K_t.expand(len(p), 3, 3), rot, torch.from_numpy(t + p[:, 3:]), *size)

    def residuals(p: np.ndarray) -> np.ndarray:
        """p (P, 6) -> (P, 2 L) pixel residuals."""
        uv, _ = cameras(p).project(points.expand(len(p), -1, -1))
        return (uv.numpy() - x).reshape(len(p), -1)

    lam = 1e-3
    r = residuals(params[None])[0]
    for _ in range(iterations):
        eps = np.array([1e-6] * 3 + [1e-6 * max(1.0, abs(t[2]))] * 3)
        J = ((residuals(params + np.diag(eps)) - r) / eps[:, None]).T
        H = J.T @ J
        g = J.T @ r
        step = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
        r_new = residuals((params + step)[None])[0]
        if r_new @ r_new < r @ r:
            params, r, lam = params + step, r_new, lam * 0.3
        else:
            lam *= 10
        if np.linalg.norm(step) < 1e-10:
            break
    best = cameras(params[None])
    return best.R[0].numpy(), best.t[0].numpy(), float(np.sqrt((r ** 2).mean() * 2))


def solve_pnp(points3d: np.ndarray, points2d: np.ndarray, image_size: tuple[int, int],
              focal_scan: tuple[float, ...] = (0.9, 1.3, 1.9, 2.8, 4.0)) -> tuple[Cameras, float]:
    """Camera from correspondences: (a batch-1 float64 ``Cameras`` of size (W, H), reprojection RMS px).

    points3d: (L, 3) world metres; points2d: (L, 2) pixels; image_size (W, H).
    focal_scan: focal lengths to try, in units of max(W, H).
    """
    X = np.asarray(points3d, dtype=np.float64)
    x = np.asarray(points2d, dtype=np.float64)
    if X.shape[0] != x.shape[0] or X.shape[0] < 6:
        raise ValueError(f"PnP needs at least 6 matching points, got {X.shape[0]} 3D and {x.shape[0]} 2D")
    if not (np.isfinite(X).all() and np.isfinite(x).all()):
        raise ValueError("PnP input contains NaN or infinity")
    W, H = image_size
    c = np.array([W / 2.0, H / 2.0])
    best = None
    for scale in focal_scan:
        f = scale * max(W, H)
        K = np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1.0]])
        R, t = _affine_init(X, x, f, c)
        R, t, rms = _refine(X, x, K, R, t, (W, H))
        if t[2] > 0 and (best is None or rms < best[3] - 1e-6):
            best = (K, R, t, rms)
    if best is None:
        raise ValueError("PnP found no camera with the head in front of it")
    K, R, t, rms = best
    return Cameras.from_numpy(K, R, t, W, H), rms


def initial_cameras(model: TemplateModel, views: list[ViewObservation]) -> list[Cameras]:
    """PnP per view from the neutral template's embedded landmarks: one batch-1 float64 ``Cameras`` a view."""
    t = model.template
    if t.num_landmarks == 0:
        raise ValueError("the template has no landmark embedding; it cannot be fitted to photos")
    pts3d = surface_points(t.verts, t.tris, t.lmk_tri, t.lmk_bary)
    use_kind = np.asarray(t.lmk_kind) == LMK_SURFACE
    cams = []
    for v in views:
        use = use_kind & (v.landmark_weight > 0)
        # A known focal length (EXIF or given) is the only one PnP tries.
        scan = {} if v.focal_px is None else {"focal_scan": (v.focal_px / max(v.width, v.height),)}
        cam, _ = solve_pnp(pts3d[use], v.landmarks[use], (v.width, v.height), **scan)
        cams.append(cam)
    return cams
