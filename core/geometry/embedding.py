"""Landmark embedding derivation: triangulate detected 2D landmarks and snap them to a mesh.

Reusable for any head mesh (the default MakeHuman head, an artist's custom rig):
render the mesh from a few calibrated views, detect 2D landmarks in each view,
then

1. triangulate every landmark by linear least squares over its rays (the point
   nearest to all rays, i.e. the midpoint method generalised to N views),
2. report how far the point is from its rays and how far it reprojects from the
   detections, so unreliable points can be flagged,
3. snap it to the closest point on an allowed set of triangles (the skin; eyes,
   teeth and lashes excluded) and express it as triangle id + barycentrics,
4. triangulate again without the views that see the snapped point at a grazing
   angle or occluded, and refine the snap over the surface toward the best
   multi-view reprojection (``derive_embedding`` runs all of it).

Conventions (DESIGN.md, "Units and conventions"): world frame is Blender's (Z up,
face toward -Y, the subject's left at +X), metres. Cameras are the core's batch-1
``core.geometry.camera.Cameras`` (OpenCV pinholes: x right, y down, z forward;
world-to-camera ``R``, ``t``; ``K`` in pixels), used here through small float64
numpy adapters (``project_points``, ``camera_rays``, ``camera_center``).
Pixel coordinates here are continuous with the origin at the top-left image
corner, so pixel centres lie at +0.5 and the principal point of a centred
camera is ``(W / 2, H / 2)``; this is the frame MediaPipe's normalised
coordinates map to when scaled by the image size.

No bpy here: the default head's embedding is derived from Cycles renders by
``scripts/derive_landmark_embedding.py`` (shipped as
``core/data/landmarks_mpfb2.json``); an imported head's landmarks are found on
the core's own renders of it (``core.adopt``); ``bench multiview`` triangulates
detections with ``triangulate``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from core.geometry.camera import Cameras

from core.geometry.mesh_layout import surface_points, vertex_normals

# Denominators smaller than this are treated as zero (degenerate triangles or edges).
_DEGENERATE_EPS = 1e-18


def camera_center(camera: Cameras) -> np.ndarray:
    """A batch-1 camera's centre in world coordinates: (3,) float64."""
    return camera.to(dtype=torch.float64).centers()[0].cpu().numpy()


def project_points(camera: Cameras, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Cameras.project`` for numpy points through a batch-1 camera, in float64.

    points: (N, 3) float64 world. Returns pixels (N, 2) float64 and depth (N,) float64
    (camera z; points behind the camera have depth <= 0 and meaningless pixels).
    """
    points = _check_points(points, "points")
    cam = camera.to(dtype=torch.float64)
    pix, depth = cam.project(torch.as_tensor(points, device=cam.device)[None])
    return pix[0].cpu().numpy(), depth[0].cpu().numpy()


def camera_rays(camera: Cameras, pixels: np.ndarray) -> np.ndarray:
    """Unit world-space ray directions through pixels (N, 2) float64 of a batch-1 camera:
    (N, 3) float64, all starting at ``camera_center``."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 2 or pixels.shape[1] != 2:
        raise ValueError(f"pixels must have shape (N, 2), got {pixels.shape}")
    cam = camera.to(dtype=torch.float64)
    return cam.rays(torch.as_tensor(pixels, device=cam.device)[None])[0].cpu().numpy()


def camera_to_json(camera: Cameras) -> dict:
    """A batch-1 camera as the embedding file stores it: K, R, t lists and the image size."""
    K, R, t = camera.numpy()
    return {"K": K.tolist(), "R": R.tolist(), "t": t.tolist(), "width": int(camera.width), "height": int(camera.height)}


def camera_from_json(data: dict) -> Cameras:
    """The batch-1 float64 camera of ``camera_to_json``'s dict."""
    return Cameras.from_numpy(np.array(data["K"]), np.array(data["R"]), np.array(data["t"]),
                              int(data["width"]), int(data["height"]))


@dataclasses.dataclass(frozen=True)
class Triangulation:
    """Landmarks triangulated from several views.

    points: (L, 3) float64 world (NaN where fewer than two views saw the landmark).
    ray_residual: (L,) float64 metres, RMS distance from the point to its rays.
    reprojection_px: (L,) float64, largest reprojection error over the views used.
    views_used: (L,) int64, number of views that contributed.
    """

    points: np.ndarray
    ray_residual: np.ndarray
    reprojection_px: np.ndarray
    views_used: np.ndarray


def triangulate(cameras: Sequence[Cameras], detections: np.ndarray, valid: np.ndarray | None = None) -> Triangulation:
    """Least-squares intersection of each landmark's rays over the views.

    cameras: N batch-1 cameras. detections: (N, L, 2) float64 pixels. valid: (N, L) bool, which
    detections to use (default: all finite ones). Minimises, per landmark, the sum of
    squared perpendicular distances to its rays.
    """
    detections = np.asarray(detections, dtype=np.float64)
    n_views = len(cameras)
    if detections.ndim != 3 or detections.shape[0] != n_views or detections.shape[2] != 2:
        raise ValueError(f"detections must have shape ({n_views}, L, 2) for {n_views} cameras, got {detections.shape}")
    finite = np.all(np.isfinite(detections), axis=2)
    if valid is None:
        valid = finite
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != detections.shape[:2]:
            raise ValueError(f"valid must have shape {detections.shape[:2]}, got {valid.shape}")
        valid = valid & finite
    n_landmarks = detections.shape[1]
    safe = np.where(finite[..., None], detections, 0.0)
    origins = np.stack([camera_center(cam) for cam in cameras])  # (N, 3)
    dirs = np.stack([camera_rays(cam, safe[i]) for i, cam in enumerate(cameras)])  # (N, L, 3)

    weight = valid.astype(np.float64)  # (N, L)
    proj = np.eye(3) - dirs[..., :, None] * dirs[..., None, :]  # (N, L, 3, 3)
    A = np.einsum("nl,nlij->lij", weight, proj)
    b = np.einsum("nl,nlij,nj->li", weight, proj, origins)
    views_used = valid.sum(axis=0)
    # Two non-parallel rays make A full rank; guard near-parallel rays as well.
    ok = (views_used >= 2) & (np.linalg.cond(A) < 1e8)
    points = np.full((n_landmarks, 3), np.nan)
    points[ok] = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]

    offsets = points[None] - origins[:, None, :]  # (N, L, 3)
    perp = offsets - np.sum(offsets * dirs, axis=2, keepdims=True) * dirs
    dist2 = np.sum(perp**2, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ray_residual = np.sqrt(np.sum(dist2 * weight, axis=0) / views_used)
    reproj = np.zeros((n_views, n_landmarks))
    for i, cam in enumerate(cameras):
        pix, _ = project_points(cam, np.where(ok[:, None], points, 0.0))
        reproj[i] = np.linalg.norm(pix - safe[i], axis=1)
    reprojection_px = np.where(valid, reproj, 0.0).max(axis=0)
    ray_residual[~ok] = np.nan
    reprojection_px[~ok] = np.nan
    return Triangulation(points, ray_residual, reprojection_px, views_used.astype(np.int64))


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentrics of the closest point on each triangle to each point (broadcasting).

    points, a, b, c: (..., 3) float64, broadcast together (e.g. points (P, 1, 3) against
    triangle corners (1, T, 3)). Returns (..., 3) float64 barycentrics (w_a, w_b, w_c),
    all in [0, 1] and summing to 1. Voronoi-region case analysis of the triangle
    (vertex, edge or interior), evaluated for every pair at once.
    """
    ab, ac = b - a, c - a
    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = np.sum(ab * ap, -1), np.sum(ac * ap, -1)
    d3, d4 = np.sum(ab * bp, -1), np.sum(ac * bp, -1)
    d5, d6 = np.sum(ab * cp, -1), np.sum(ac * cp, -1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.clip(num / np.where(np.abs(den) > _DEGENERATE_EPS, den, 1.0), 0.0, 1.0)

    t_ab = ratio(d1, d1 - d3)
    t_ac = ratio(d2, d2 - d6)
    t_bc = ratio(d4 - d3, (d4 - d3) + (d5 - d6))
    total = va + vb + vc
    safe_total = np.where(np.abs(total) > _DEGENERATE_EPS, total, 1.0)
    v_in, w_in = vb / safe_total, vc / safe_total

    zeros, ones = np.zeros_like(d1), np.ones_like(d1)
    in_a = (d1 <= 0) & (d2 <= 0)
    in_b = (d3 >= 0) & (d4 <= d3)
    in_c = (d6 >= 0) & (d5 <= d6)
    on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    on_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    # First matching region wins, in the order of the case analysis.
    conditions = [in_a, in_b, on_ab, in_c, on_ac, on_bc]
    v = np.select(conditions, [zeros, ones, t_ab, zeros, zeros, 1.0 - t_bc], default=v_in)
    w = np.select(conditions, [zeros, zeros, zeros, ones, t_ac, t_bc], default=w_in)
    return np.stack([1.0 - v - w, v, w], axis=-1)


@dataclasses.dataclass(frozen=True)
class SurfaceSnap:
    """Points expressed on a triangle mesh.

    tri: (P,) int64 index into the triangle array given to ``snap_to_surface``.
    bary: (P, 3) float64 barycentrics of the triangle's corners (sum 1, in [0, 1]).
    points: (P, 3) float64 snapped points. distance: (P,) float64 from input to snapped point.
    """

    tri: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    distance: np.ndarray


def snap_to_surface(
    points: np.ndarray, verts: np.ndarray, tris: np.ndarray, allowed: np.ndarray | None = None, chunk: int = 64
) -> SurfaceSnap:
    """Closest point on the allowed triangles for each point (exact; only the triangles near
    enough to hold it are tried).

    points: (P, 3) float64. verts: (V, 3) float64. tris: (T, 3) int64.
    allowed: (T,) bool mask or (A,) int64 triangle ids to snap onto (default: all).
    chunk: bounds memory at chunk * 4096 point-triangle pairs at once. Ties go to the
    lowest triangle id, so the result is deterministic.
    """
    points = _check_points(points, "points")
    verts = _check_points(verts, "verts")
    tris = _check_tris(tris, len(verts))
    if allowed is None:
        candidates = np.arange(len(tris))
    else:
        allowed = np.asarray(allowed)
        candidates = np.flatnonzero(allowed) if allowed.dtype == bool else np.unique(allowed.astype(np.int64))
        if allowed.dtype == bool and allowed.shape != (len(tris),):
            raise ValueError(f"allowed mask must have shape ({len(tris)},), got {allowed.shape}")
        if candidates.size and (candidates.min() < 0 or candidates.max() >= len(tris)):
            raise ValueError("allowed triangle ids out of range")
    if candidates.size == 0:
        raise ValueError("snap_to_surface: no triangles to snap onto")
    if not np.all(np.isfinite(points)):
        raise ValueError("snap_to_surface: points contain NaN or infinity (untriangulated landmarks?)")
    best_tri, best_bary = _closest_on(points, verts, tris[candidates], max_pairs=chunk * 4096)
    best_tri = candidates[best_tri]
    snapped = surface_points(verts, tris, best_tri, best_bary)
    return SurfaceSnap(best_tri, best_bary, snapped, np.linalg.norm(snapped - points, axis=1))


def _closest_on(points: np.ndarray, verts: np.ndarray, tris: np.ndarray, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """(tri (P,), bary (P, 3)): the exact closest point on ``tris`` to each point.

    Only triangles that can hold it are tried: the nearest corner vertex bounds a point's
    distance to the surface by u, so a triangle whose centroid lies further than u plus
    its own reach (centroid to farthest corner) cannot be closer. Ties go to the lowest
    triangle id. ``max_pairs`` bounds the point-triangle pairs evaluated at once.
    """
    from scipy.spatial import cKDTree

    corners = verts[tris]  # (T, 3, 3)
    centroid = corners.mean(1)
    reach = np.linalg.norm(corners - centroid[:, None], axis=2).max(1)
    used = np.unique(tris)
    bound, _ = cKDTree(verts[used]).query(points)
    radius = bound + reach.max() + 1e-12
    tree = cKDTree(centroid)
    counts = np.asarray(tree.query_ball_point(points, radius, return_length=True))
    best_tri = np.empty(len(points), dtype=np.int64)
    best_bary = np.empty((len(points), 3))
    start = 0
    while start < len(points):
        stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]), max_pairs, side="right")))
        near = tree.query_ball_point(points[start:stop], radius[start:stop])
        pid = np.repeat(np.arange(start, stop), counts[start:stop])
        tid = np.fromiter(itertools.chain.from_iterable(near), dtype=np.int64, count=len(pid))
        c = corners[tid]
        bary = closest_points_on_triangles(points[pid], c[:, 0], c[:, 1], c[:, 2])
        dist2 = np.sum((np.einsum("pk,pkj->pj", bary, c) - points[pid]) ** 2, axis=1)
        order = np.lexsort((tid, dist2, pid))
        first = order[np.r_[True, pid[order][1:] != pid[order][:-1]]]
        best_tri[pid[first]] = tid[first]
        best_bary[pid[first]] = bary[first]
        start = stop
    return best_tri, best_bary


def ray_hits(origins: np.ndarray, dirs: np.ndarray, max_dist: np.ndarray, verts: np.ndarray, tris: np.ndarray,
             chunk: int = 64) -> np.ndarray:
    """Whether each ray segment hits any triangle before ``max_dist`` (Moller-Trumbore).

    origins: (R, 3) float64. dirs: (R, 3) float64 unit. max_dist: (R,) float64.
    verts: (V, 3) float64. tris: (T, 3) int64. Returns (R,) bool. Rays that share one
    origin (a camera's) try only the triangles whose projection from it can hold the ray;
    others try every triangle, ``chunk`` rays at a time.
    """
    corners = np.asarray(verts, dtype=np.float64)[_check_tris(tris, len(verts))]
    origins, dirs = np.asarray(origins, np.float64), np.asarray(dirs, np.float64)
    max_dist = np.asarray(max_dist, np.float64)
    hit = np.zeros(len(origins), dtype=bool)
    if not len(origins) or not len(corners):
        return hit
    if np.all(origins == origins[0]):
        for start in range(0, len(origins), 16 * chunk):
            part = slice(start, start + 16 * chunk)
            rid, tid = _pairs_seen_from(origins[0], dirs[part], corners)
            rid = rid + start
            hit[rid[_segment_hits(origins[rid], dirs[rid], max_dist[rid], corners[tid])]] = True
        return hit
    every = np.arange(len(corners))
    for start in range(0, len(origins), chunk):
        rid = np.repeat(np.arange(start, min(start + chunk, len(origins))), len(corners))
        tid = np.tile(every, len(rid) // len(corners))
        hit[rid[_segment_hits(origins[rid], dirs[rid], max_dist[rid], corners[tid])]] = True
    return hit


def _segment_hits(o: np.ndarray, d: np.ndarray, max_dist: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(K,) bool: ray k (origin o, unit dir d) hits triangle ``tri[k]`` (3, 3) at 0 < t < max_dist."""
    a = tri[:, 0]
    e1, e2 = tri[:, 1] - a, tri[:, 2] - a
    pvec = np.cross(d, e2)
    det = np.einsum("kj,kj->k", e1, pvec)
    ok = np.abs(det) > _DEGENERATE_EPS
    inv = 1.0 / np.where(ok, det, 1.0)
    tvec = o - a
    u = np.einsum("kj,kj->k", tvec, pvec) * inv
    qvec = np.cross(tvec, e1)
    v = np.einsum("kj,kj->k", d, qvec) * inv
    t = np.einsum("kj,kj->k", e2, qvec) * inv
    return ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0) & (t < max_dist)


def _pairs_seen_from(eye: np.ndarray, dirs: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ray ids, triangle ids): the pairs a ray from ``eye`` along ``dirs`` can hit.

    Seen from the eye through a plane facing the rays' mean direction, a ray hits a
    triangle in front of the eye only where its point on the plane lies inside the
    triangle's projection, so within that projection's reach (centroid to farthest
    corner) of its centroid. Triangles that reach behind the eye and rays that do not
    run forward are paired with everything.
    """
    from scipy.spatial import cKDTree

    z = dirs.mean(0)
    z = z / max(np.linalg.norm(z), 1e-20)
    x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    frame = np.stack([x, np.cross(z, x), z], 1)  # world -> (x, y, z) columns
    rel = (corners - eye) @ frame  # (T, 3, 3)
    front = rel[..., 2].min(1) > 1e-9
    ray = dirs @ frame
    forward = ray[:, 2] > 1e-9
    flat = rel[front][..., :2] / rel[front][..., 2:]
    centroid = flat.mean(1)
    reach = np.linalg.norm(flat - centroid[:, None], axis=2).max(1) if len(flat) else np.zeros(0)
    front_ids, others = np.flatnonzero(front), np.flatnonzero(~front)
    rays = np.flatnonzero(forward)
    rid, tid = [], []
    if len(front_ids) and len(rays):
        point = ray[rays, :2] / ray[rays, 2:]
        near = cKDTree(centroid).query_ball_point(point, reach.max() * (1 + 1e-9) + 1e-12)
        counts = np.fromiter(map(len, near), dtype=np.int64, count=len(near))
        pid = np.repeat(np.arange(len(rays)), counts)
        cand = np.fromiter(itertools.chain.from_iterable(near), dtype=np.int64, count=int(counts.sum()))
        close = np.linalg.norm(point[pid] - centroid[cand], axis=1) <= reach[cand] * (1 + 1e-9) + 1e-12
        rid.append(rays[pid[close]])
        tid.append(front_ids[cand[close]])
    backward = np.flatnonzero(~forward)
    everything = np.arange(len(corners))
    rid += [np.repeat(backward, len(corners)), np.repeat(rays, len(others))]
    tid += [np.tile(everything, len(backward)), np.tile(others, len(rays))]
    return np.concatenate(rid), np.concatenate(tid)


def visible_views(
    points: np.ndarray,
    normals: np.ndarray,
    cameras: Sequence[Cameras],
    verts: np.ndarray,
    tris: np.ndarray,
    min_cos: float = 0.25,
    clearance: float = 1e-3,
) -> np.ndarray:
    """Which cameras see each surface point face-on and unoccluded.

    points: (L, 3) float64 on the surface. normals: (L, 3) float64 unit outward normals.
    verts (V, 3) float64, tris (T, 3) int64: the occluding geometry. A view counts when
    the cosine between the normal and the direction to the camera is at least ``min_cos``
    (grazing and silhouette views are where 2D detectors guess) and no triangle lies on
    the segment from the camera to within ``clearance`` metres of the point.
    Returns (N, L) bool.
    """
    points = _check_points(points, "points")
    visible = np.zeros((len(cameras), len(points)), dtype=bool)
    for i, cam in enumerate(cameras):
        center = camera_center(cam)
        to_cam = center - points
        dist = np.linalg.norm(to_cam, axis=1)
        facing = np.sum(normals * to_cam, axis=1) / dist >= min_cos
        dirs = -to_cam / dist[:, None]
        origins = np.broadcast_to(center, points.shape)
        visible[i] = facing & ~ray_hits(origins, dirs, dist - clearance, verts, tris)
    return visible


def barycentric_grid(subdivisions: int) -> np.ndarray:
    """All barycentrics (i, j, k) / n with i + j + k = n: ((n+1)(n+2)/2, 3) float64."""
    n = int(subdivisions)
    if n < 1:
        raise ValueError(f"subdivisions must be >= 1, got {subdivisions}")
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    return np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n


def refine_on_surface(
    start: SurfaceSnap,
    origin: np.ndarray,
    cameras: Sequence[Cameras],
    detections: np.ndarray,
    used: np.ndarray,
    verts: np.ndarray,
    tris: np.ndarray,
    allowed: np.ndarray | None = None,
    neighbours: int = 32,
    subdivisions: int = 8,
    max_move: float = 4e-3,
    keep: np.ndarray | None = None,
) -> SurfaceSnap:
    """Move snapped points over the surface to where they best reproject into the views.

    Nearest-point snapping moves a point along the surface normal, which shifts it in
    every image when the triangulated depth is off (2D detectors disagree about depth
    across views). This searches the ``neighbours`` allowed triangles nearest to each
    snapped point (by centroid), at a barycentric grid of ``subdivisions``, for the
    surface point with the least sum of squared reprojection errors over the used views,
    no farther than ``max_move`` metres from its start (on smooth skin the views pin the
    position along the surface only weakly); the starting point is a candidate too, so
    the error never grows.

    start: the snapped points (tri ids index ``tris``). origin: (L, 3) float64, the
    points that were snapped (the returned ``distance`` is measured from them).
    detections: (N, L, 2) float64 pixels. used: (N, L) bool. verts: (V, 3) float64.
    tris: (T, 3) int64. allowed as for ``snap_to_surface``. keep: (L,) bool, points
    that stay where they are (silhouette points: their detections depend on the view).
    """
    verts = _check_points(verts, "verts")
    tris = _check_tris(tris, len(verts))
    candidates = np.arange(len(tris)) if allowed is None else np.asarray(allowed)
    if candidates.dtype == bool:
        candidates = np.flatnonzero(candidates)
    centroids = verts[tris[candidates]].mean(axis=1)
    k = min(int(neighbours), len(candidates))
    grid = barycentric_grid(subdivisions)  # (S, 3)
    weights = np.asarray(used, dtype=np.float64)  # (N, L)
    detections = np.where(np.asarray(used)[..., None], np.asarray(detections, dtype=np.float64), 0.0)

    def cost(points: np.ndarray) -> np.ndarray:
        """points (L, C, 3) -> (L, C) sum over used views of squared pixel error."""
        total = np.zeros(points.shape[:2])
        for i, cam in enumerate(cameras):
            pix, _ = project_points(cam, points.reshape(-1, 3))
            err = np.sum((pix.reshape(*points.shape[:2], 2) - detections[i][:, None]) ** 2, axis=-1)
            total += weights[i][:, None] * err
        return total

    d2 = np.sum((start.points[:, None, :] - centroids[None]) ** 2, axis=-1)  # (L, A)
    near = candidates[np.argpartition(d2, k - 1, axis=1)[:, :k]]  # (L, k)
    near_corners = verts[tris[near]]  # (L, k, 3, 3)
    pts = np.einsum("sc,lkcd->lksd", grid, near_corners).reshape(len(near), -1, 3)
    all_points = np.concatenate([start.points[:, None], pts], axis=1)
    total = cost(all_points)
    too_far = np.sum((all_points - start.points[:, None]) ** 2, axis=-1) > max_move**2
    total[:, 1:][too_far[:, 1:]] = np.inf
    if keep is not None:
        total[np.asarray(keep, dtype=bool), 1:] = np.inf
    best = np.argmin(total, axis=1)  # ties go to the start point, then the lowest candidate
    moved = best > 0
    flat = np.maximum(best - 1, 0)
    tri = np.where(moved, near[np.arange(len(near)), flat // len(grid)], start.tri)
    bary = np.where(moved[:, None], grid[flat % len(grid)], start.bary)
    points = surface_points(verts, tris, tri, bary)
    return SurfaceSnap(tri, bary, points, np.linalg.norm(points - _check_points(origin, "origin"), axis=1))


@dataclasses.dataclass(frozen=True)
class LandmarkEmbedding:
    """Result of ``derive_embedding``.

    triangulation: the final triangulation (views restricted to those that see the point).
    nearest: its nearest-point snap onto the allowed surface.
    snap: the embedding: ``nearest`` refined over the surface (``refine_on_surface``),
    or ``nearest`` itself when refinement is off. used: (N, L) bool, the detections used.
    """

    triangulation: Triangulation
    nearest: SurfaceSnap
    snap: SurfaceSnap
    used: np.ndarray


def derive_embedding(
    verts: np.ndarray,
    tris: np.ndarray,
    cameras: Sequence[Cameras],
    detections: np.ndarray,
    valid: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    min_cos: float = 0.25,
    refine_neighbours: int = 32,
    silhouette: np.ndarray | None = None,
) -> LandmarkEmbedding:
    """Triangulate landmarks seen in several views and embed them on the mesh.

    verts: (V, 3) float64 world metres. tris: (T, 3) int64, consistently oriented
    (normals outward). cameras: N batch-1 cameras. detections: (N, L, 2) float64 pixels.
    valid: (N, L) bool. allowed: triangles to embed onto, as for ``snap_to_surface``.

    1. Triangulate with every valid detection and snap to the nearest surface point.
    2. Drop the views that see the snapped point at a grazing angle or occluded
       (``visible_views``; all of ``tris`` occlude), where detectors guess; points left
       with fewer than two such views keep all their valid views. Triangulate and snap again.
    3. Unless ``refine_neighbours`` is 0, move each point over the surface to where it
       best reprojects into the used views (``refine_on_surface``), except the
       ``silhouette`` ones ((L,) bool), whose detections depend on the view.

    Raises ValueError naming the landmarks that fewer than two views saw.
    """
    detections = np.asarray(detections, dtype=np.float64)
    valid = np.all(np.isfinite(detections), axis=2) if valid is None else np.asarray(valid, dtype=bool)
    first = _triangulate_and_snap(verts, tris, cameras, detections, valid, allowed)
    verts, tris = _check_points(verts, "verts"), _check_tris(tris, len(verts))
    normals = surface_points(vertex_normals(verts, tris), tris, first.tri, first.bary)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    seen = valid & visible_views(first.points, normals, cameras, verts, tris, min_cos)
    used = np.where(seen.sum(axis=0) >= 2, seen, valid)
    triangulation = triangulate(cameras, detections, used)
    nearest = snap_to_surface(triangulation.points, verts, tris, allowed)
    snap = nearest
    if refine_neighbours > 0:
        snap = refine_on_surface(
            nearest, triangulation.points, cameras, detections, used, verts, tris, allowed, refine_neighbours,
            keep=silhouette,
        )
    return LandmarkEmbedding(triangulation, nearest, snap, used)


def _triangulate_and_snap(verts, tris, cameras, detections, valid, allowed) -> SurfaceSnap:
    tri = triangulate(cameras, detections, valid)
    missing = np.flatnonzero(~np.all(np.isfinite(tri.points), axis=1))
    if missing.size:
        raise ValueError(
            f"{missing.size} landmarks were not seen in two usable views (ids {missing[:20].tolist()}...);"
            " add views or check the detections"
        )
    return snap_to_surface(tri.points, verts, tris, allowed)


def chain_edges(edges: Iterable[tuple[int, int]]) -> list[tuple[list[int], bool]]:
    """Order an edge set into sequences: one (ids, closed) per connected component.

    Every vertex must have degree 1 or 2 (paths and loops). A path starts at its
    smaller end id; a loop starts at its smallest id and continues to the smaller
    neighbour. Components are sorted by their first id, so the result is deterministic.
    """
    neighbours: dict[int, list[int]] = {}
    for i, j in {tuple(sorted((int(a), int(b)))) for a, b in edges}:
        if i == j:
            raise ValueError(f"self-loop edge at {i}")
        neighbours.setdefault(i, []).append(j)
        neighbours.setdefault(j, []).append(i)
    branching = sorted(v for v, n in neighbours.items() if len(n) > 2)
    if branching:
        raise ValueError(f"edges branch at {branching}: not a set of paths and loops")
    seen: set[int] = set()
    chains = []
    for start in sorted(neighbours):
        if start in seen or (len(neighbours[start]) == 2 and _on_path(start, neighbours)):
            continue
        order = [start]
        seen.add(start)
        prev, current = None, start
        while True:
            options = sorted(n for n in neighbours[current] if n != prev and n not in seen)
            if not options:
                break
            prev, current = current, options[0]
            order.append(current)
            seen.add(current)
        closed = len(neighbours[start]) == 2
        chains.append((order, closed))
    return sorted(chains, key=lambda chain: chain[0][0])


def _on_path(vertex: int, neighbours: dict[int, list[int]]) -> bool:
    """Whether a degree-2 vertex belongs to a component that has ends (so it is not a start)."""
    stack, seen = [vertex], {vertex}
    while stack:
        v = stack.pop()
        if len(neighbours[v]) == 1:
            return True
        for n in neighbours[v]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return False


def rotate_loop(loop: Sequence[int], start: int, second: int | None = None) -> list[int]:
    """A closed loop re-ordered to begin at ``start``, going toward ``second`` if given."""
    loop = list(loop)
    if start not in loop:
        raise ValueError(f"{start} is not on the loop")
    k = loop.index(start)
    out = loop[k:] + loop[:k]
    if second is not None and out[1] != second:
        out = [out[0]] + out[1:][::-1]
        if out[1] != second:
            raise ValueError(f"{second} is not next to {start} on the loop")
    return out


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {points.shape}")
    return points


def _check_tris(tris: np.ndarray, n_verts: int) -> np.ndarray:
    tris = np.asarray(tris)
    if tris.ndim != 2 or tris.shape[1] != 3 or not np.issubdtype(tris.dtype, np.integer):
        raise ValueError(f"tris must be an integer array of shape (T, 3), got {tris.dtype} {tris.shape}")
    if tris.size and (tris.min() < 0 or tris.max() >= n_verts):
        raise ValueError(f"tris refer to vertices outside 0..{n_verts - 1}")
    return tris.astype(np.int64)
