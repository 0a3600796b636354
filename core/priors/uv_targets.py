"""Per-vertex 2D targets from a per-pixel UV-coordinate map (Pixel3DMM §3.2.1).

Each template vertex v looks up the pixel p* whose predicted UV is nearest to
its own template UV; it gets p* as its target only when ``|T_v - U(p*)| <
threshold`` (the paper's δ_uv). On top of the paper's distance test, three
occlusion tests drop vertices whose nearest pixel does not really show them:
a vertex hidden behind the silhouette or behind another part of the face
(the nose hides a strip of cheek) still finds a "nearest" pixel, but that
pixel lies on the mask's edge, on a jump in the UV map, or more than a pixel
away from where the vertex's UV would fall in the local UV map. The local
UV Jacobian also gives a sub-pixel target.
"""

from __future__ import annotations

import numpy as np

# A UV step more than this many times its neighbour's step marks an occlusion edge.
UV_JUMP_RATIO = 4.0
# Sub-pixel offsets beyond this (pixels) mean the vertex's UV is not in the local UV patch.
MAX_SUBPIXEL_OFFSET = 1.0


def uv_map_to_vertex_targets(
    uv_map: np.ndarray,
    mask: np.ndarray,
    vertex_uvs: np.ndarray,
    threshold: float,
    *,
    visible: np.ndarray | None = None,
    max_offset_px: float = MAX_SUBPIXEL_OFFSET,
    jump_ratio: float = UV_JUMP_RATIO,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-UV pixel targets for template vertices.

    uv_map: (H, W, 2) float, predicted template UV per pixel.
    mask: (H, W) bool, pixels that may be matched (face skin: no background,
        eyeballs or mouth interior). Non-finite UVs are excluded too.
    vertex_uvs: (N, 2) float, one template UV per vertex (seam vertices: pick one corner).
    threshold: δ_uv, the largest accepted UV distance between a vertex and its pixel.
    visible: optional (N,) bool, vertices the current render shows; others are invalid.
    max_offset_px, jump_ratio: occlusion-test tolerances (see module doc).
    Returns targets (N, 2) float32 pixel coordinates (x right, y down, pixel
    centres at +0.5; NaN where invalid) and valid (N,) bool.
    """
    uv_map = np.asarray(uv_map, np.float64)
    mask = np.asarray(mask)
    vertex_uvs = np.asarray(vertex_uvs, np.float64)
    if uv_map.ndim != 3 or uv_map.shape[2] != 2:
        raise ValueError(f"uv_map must have shape (H, W, 2), got {uv_map.shape}")
    if mask.shape != uv_map.shape[:2]:
        raise ValueError(f"mask must have shape {uv_map.shape[:2]} (the uv_map's H, W), got {mask.shape}")
    if vertex_uvs.ndim != 2 or vertex_uvs.shape[1] != 2:
        raise ValueError(f"vertex_uvs must have shape (N, 2), got {vertex_uvs.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    n = len(vertex_uvs)
    if visible is not None:
        visible = np.asarray(visible, bool)
        if visible.shape != (n,):
            raise ValueError(f"visible must have shape ({n},), got {visible.shape}")

    h, w = mask.shape
    usable = mask.astype(bool) & np.isfinite(uv_map).all(axis=2)
    targets = np.full((n, 2), np.nan, np.float32)
    valid = np.zeros(n, bool)
    ys, xs = np.nonzero(usable)
    if len(ys) == 0 or n == 0:
        return targets, valid

    from scipy.spatial import cKDTree  # here: scipy.spatial costs ~0.15 s to import, and most fits use no UV map

    tree = cKDTree(uv_map[ys, xs])
    dist, idx = tree.query(vertex_uvs, k=1, distance_upper_bound=threshold)
    hit = np.isfinite(dist) & (dist < threshold) & np.isfinite(vertex_uvs).all(axis=1)
    if visible is not None:
        hit &= visible
    rows = np.nonzero(hit)[0]
    py, px = ys[idx[rows]], xs[idx[rows]]

    # Occlusion test 1: all four neighbours must be usable (edge pixels collect hidden vertices).
    pad = np.zeros((h + 2, w + 2), bool)
    pad[1:-1, 1:-1] = usable
    interior = pad[py, px + 2] & pad[py, px] & pad[py + 2, px + 1] & pad[py, px + 1]
    rows, py, px = rows[interior], py[interior], px[interior]

    uv = np.where(usable[..., None], uv_map, 0.0)
    centre = uv[py, px]
    fx, bx = uv[py, px + 1] - centre, centre - uv[py, px - 1]
    fy, by = uv[py + 1, px] - centre, centre - uv[py - 1, px]

    # Occlusion test 2: no jump in the UV map around the pixel.
    def smooth(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        lo = np.maximum(np.minimum(na, nb), 1e-12)
        return np.maximum(na, nb) <= jump_ratio * lo

    ok = smooth(fx, bx) & smooth(fy, by)

    # Occlusion test 3 and sub-pixel refinement: solve J s = T_v - U(p) with the
    # central-difference UV Jacobian J = [dU/dx, dU/dy] (2, 2) per vertex.
    jac = np.stack([(fx + bx) / 2.0, (fy + by) / 2.0], axis=2)
    det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
    scale = np.einsum("kij,kij->k", jac, jac)
    ok &= np.abs(det) > 1e-6 * np.maximum(scale, 1e-30)
    safe = np.where(ok[:, None, None], jac, np.eye(2))
    offset = np.linalg.solve(safe, (vertex_uvs[rows] - centre)[..., None])[..., 0]
    ok &= np.abs(offset).max(axis=1) <= max_offset_px

    rows, offset = rows[ok], offset[ok]
    pix = np.stack([px[ok], py[ok]], axis=1) + 0.5
    targets[rows] = (pix + offset).astype(np.float32)
    valid[rows] = True
    return targets, valid
