"""Baseline: the public VGGTFace pipeline, for comparison with the topology-aware BA.

1. A classic point bundle adjustment with COLMAP/Ceres (``pycolmap``): one 3D
   point per correspondence track (landmark id or vertex id) seen in two or
   more views, initialised from the template; cameras from the initial
   cameras; Cauchy loss, focal refined. Observations whose reprojection error
   exceeds the threshold afterwards are dropped and the BA runs again
   (COLMAP's filter-and-refine).
2. The BA's free gauge is fixed by a similarity alignment of the adjusted
   points to the initial ones (cameras moved with them).
3. A separate Laplacian "large steps" fit of the template to the adjusted
   points: X = X0 + (I + λ L)⁻¹ u, Adam on u, 400 iterations.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bridge.conventions import project_points_np
from core.geometry.camera import Cameras
from core.geometry.constants import MM
from core.geometry.similarity import similarity_transform

from .correspondences import ViewCorrespondences
from .topology_ba import BAOptions, BAResult, smoothing_solver

LARGE_STEPS_ITERATIONS = 400


def _reconstruction(corrs, cams, points: dict[int, np.ndarray], keep: list[np.ndarray]):
    import pycolmap

    rec = pycolmap.Reconstruction()
    point_track: dict[int, int] = {}
    tracks: dict[int, list[tuple[int, int]]] = {}
    for i, (c, cam) in enumerate(zip(corrs, cams)):
        K, R, t = cam.numpy()
        rec.add_camera_with_trivial_rig(pycolmap.Camera(
            camera_id=i + 1, model="PINHOLE", width=c.width, height=c.height,
            params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
        sel = np.flatnonzero(keep[i])
        rec.add_image_with_trivial_frame(
            pycolmap.Image(name=c.name or f"view{i}", keypoints=c.pixels[sel].astype(np.float64),
                           camera_id=i + 1, image_id=i + 1),
            pycolmap.Rigid3d(np.hstack([R, t[:, None]])))
        for k, j in enumerate(sel):
            tracks.setdefault(int(c.track_ids[j]), []).append((i + 1, k))
    for tid, obs in tracks.items():
        if len(obs) < 2 or tid not in points:
            continue
        track = pycolmap.Track()
        for image_id, idx in obs:
            track.add_element(image_id, idx)
        point_track[rec.add_point3D(points[tid], track)] = tid
    return rec, point_track


def _read_back(rec, cams, point_track: dict[int, int]) -> tuple[list[Cameras], dict[int, np.ndarray]]:
    out = []
    for i, cam in enumerate(cams):
        image = rec.image(i + 1)
        pose = image.cam_from_world()
        fx, fy, cx, cy = rec.camera(i + 1).params
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        out.append(Cameras.from_numpy(K, pose.rotation.matrix(), np.asarray(pose.translation, np.float64),
                                      cam.width, cam.height))
    points: dict[int, np.ndarray] = {}
    for pid, p in rec.points3D.items():
        points[point_track[pid]] = np.asarray(p.xyz, np.float64)
    return out, points


def colmap_point_ba(corrs: list[ViewCorrespondences], cameras: list[Cameras], init_points: dict[int, np.ndarray],
                    options: BAOptions) -> tuple[list[Cameras], dict[int, np.ndarray], list[np.ndarray]]:
    """COLMAP BA + one filter-and-refine pass. Returns cameras, adjusted points by track id, kept masks (C,) bool."""
    import pycolmap

    keep = [c.weight > 0 for c in corrs]
    cams, points = cameras, dict(init_points)
    for _ in range(2):
        rec, point_track = _reconstruction(corrs, cams, points, keep)
        opts = pycolmap.BundleAdjustmentOptions()
        opts.print_summary = False
        opts.refine_principal_point = False
        opts.refine_extra_params = False
        opts.refine_focal_length = options.refine_focal
        opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = options.robust_scale * max(corrs[0].width, corrs[0].height)
        opts.ceres.solver_options.num_threads = torch.get_num_threads()
        pycolmap.bundle_adjustment(rec, opts)
        cams, adjusted = _read_back(rec, cams, point_track)
        points.update(adjusted)
        keep = []
        for c, cam in zip(corrs, cams):
            has = np.isin(c.track_ids, np.fromiter(adjusted, np.int64, len(adjusted)))
            X = np.stack([points.get(t, np.zeros(3)) for t in c.track_ids.tolist()])
            uv, _ = project_points_np(X, *cam.numpy())
            r = np.linalg.norm(uv - c.pixels, axis=1)
            keep.append((c.weight > 0) & has & (r <= options.outlier_min * max(c.width, c.height)))
    return cams, {t: p for t, p in points.items() if t in adjusted}, keep


def colmap_then_largesteps(verts: np.ndarray, tris: np.ndarray, corrs: list[ViewCorrespondences],
                           cameras: list[Cameras], options: BAOptions | None = None, device: str = "cpu",
                           large_steps_lambda: float = 20.0, iterations: int = LARGE_STEPS_ITERATIONS,
                           lr: float = 0.3) -> BAResult:
    """COLMAP point BA, gauge fix, then a large-steps fit of the template to the points.

    verts: (N, 3) float32 initial template vertices; tris: (T, 3) int64.
    """
    opts = options or BAOptions()
    start = time.perf_counter()
    # Initial 3D point of each track: its surface point on the initial mesh (first view that has it).
    init: dict[int, np.ndarray] = {}
    first: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in corrs:
        pts = (verts[c.vert_ids] * c.bary[..., None]).sum(1).astype(np.float64)
        for k, t in enumerate(c.track_ids.tolist()):
            if t not in init:
                init[t] = pts[k]
                first[t] = (c.vert_ids[k], c.bary[k])
    cams, points, keep = colmap_point_ba(corrs, cameras, init, opts)
    if len(points) < 4:
        raise ValueError("the point bundle adjustment kept fewer than 4 points seen in two or more views; "
                         "give more overlapping views")
    ids = sorted(points)
    P = np.stack([points[t] for t in ids])
    P0 = np.stack([init[t] for t in ids])
    s, R, t = similarity_transform(P, P0)
    P = s * P @ R.T + t
    # x_c = Rc x + tc with x = (x' − t) Rᵀ / s  →  Rc' = Rc Rᵀ, tc' = s tc − Rc Rᵀ t (scale carried by tc).
    moved = []
    for c in cams:
        Kc, Rc, tc = c.numpy()
        moved.append(Cameras.from_numpy(Kc, Rc @ R.T, s * tc - Rc @ R.T @ t, c.width, c.height))
    cams = moved
    dev = torch.device(device)
    X0 = torch.as_tensor(verts, device=dev, dtype=torch.float32)
    T = torch.as_tensor(tris, device=dev, dtype=torch.int64)
    smooth = smoothing_solver(T, len(verts), large_steps_lambda)
    vid = torch.as_tensor(np.stack([first[k][0] for k in ids]), device=dev)
    bary = torch.as_tensor(np.stack([first[k][1] for k in ids]), device=dev, dtype=torch.float32)
    target = torch.as_tensor(P, device=dev, dtype=torch.float32)
    u = torch.zeros_like(X0, requires_grad=True)
    opt = torch.optim.Adam([u], lr=lr)
    history = []
    for _ in range(iterations):
        opt.zero_grad(set_to_none=True)
        X = X0 + smooth(u) / MM
        loss = (((X[vid] * bary[..., None]).sum(1) - target) * MM).pow(2).sum(-1).mean()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    with torch.no_grad():
        X = (X0 + smooth(u) / MM).cpu().numpy().astype(np.float32)
    rms = []
    for c, cam, k in zip(corrs, cams, keep):
        pts = (X[c.vert_ids] * c.bary[..., None]).sum(1)
        uv, _ = project_points_np(pts, *cam.numpy())
        r = np.linalg.norm(uv - c.pixels, axis=1)[k]
        rms.append(float(np.sqrt((r ** 2).mean())) if r.size else float("nan"))
    return BAResult(X, cams, keep, rms, time.perf_counter() - start, history)
