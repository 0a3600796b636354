"""Brute-force reference rasteriser: every pixel against every triangle.

Slow and obviously correct, in float64; the tests and ``likeness bench
render`` compare the fast backends against it. It also reports which pixels
are ambiguous (a pixel centre within ``edge_tol`` pixels of a covering
triangle's boundary, or two surfaces at nearly the same depth), where
rounding may legitimately pick a different face.
"""

from __future__ import annotations

import torch

from core.geometry.camera import Cameras

NEAR = 1e-3


@torch.no_grad()
def rasterize_naive(
    verts: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    near: float = NEAR,
    edge_tol: float = 1e-3,
    depth_rel_tol: float = 1e-5,
    pixels: torch.Tensor | None = None,
    chunk: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest face per pixel by testing all triangles.

    verts: (B, V, 3) world; faces: (F, 3) int64; cameras of batch B.
    pixels: optional (P,) int64 flat indices into H*W to test (default all).
    Returns face_id (B, P) int64 (-1 empty) and ambiguous (B, P) bool; with
    ``pixels=None``, P = H*W in row-major order.
    """
    H, W = cameras.height, cameras.width
    K, R, t = (x.double() for x in (cameras.K, cameras.R, cameras.t))
    cam = torch.einsum("bij,bvj->bvi", R, verts.double()) + t[:, None]
    z = cam[..., 2]
    u = K[:, 0, 0, None] * cam[..., 0] / z + K[:, 0, 2, None]
    v = K[:, 1, 1, None] * cam[..., 1] / z + K[:, 1, 2, None]
    if pixels is None:
        pixels = torch.arange(H * W, device=verts.device)
    px = (pixels % W).double() + 0.5
    py = (pixels // W).double() + 0.5
    B, F = verts.shape[0], faces.shape[0]
    face_id = torch.full((B, pixels.numel()), -1, dtype=torch.int64, device=verts.device)
    ambiguous = torch.zeros(B, pixels.numel(), dtype=torch.bool, device=verts.device)
    step = max(1, chunk // max(1, pixels.numel()))
    for b in range(B):
        best = torch.full((pixels.numel(),), float("inf"), dtype=torch.float64, device=verts.device)
        second = best.clone()
        for lo in range(0, F, step):
            f = faces[lo : lo + step]
            ax, bx, cx = (u[b, f[:, i], None] for i in range(3))
            ay, by, cy = (v[b, f[:, i], None] for i in range(3))
            za, zb, zc = (z[b, f[:, i], None] for i in range(3))
            # Solve P - a = beta (b - a) + gamma (c - a) by Cramer's rule.
            det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
            qx, qy = px[None] - ax, py[None] - ay
            beta = (qx * (cy - ay) - (cx - ax) * qy) / det
            gamma = ((bx - ax) * qy - qx * (by - ay)) / det
            alpha = 1.0 - beta - gamma
            drawable = (torch.minimum(torch.minimum(za, zb), zc) >= near) & (det.abs() > 1e-8)
            inside = drawable & (alpha >= 0) & (beta >= 0) & (gamma >= 0)
            depth = 1.0 / (alpha / za + beta / zb + gamma / zc)
            depth = torch.where(inside, depth, torch.full_like(depth, float("inf")))
            # Signed distance (pixels) from the centre to each edge line, positive inside.
            lab = torch.hypot(bx - ax, by - ay)
            lbc = torch.hypot(cx - bx, cy - by)
            lca = torch.hypot(ax - cx, ay - cy)
            area = det.abs()
            dist = torch.minimum(torch.minimum(alpha * area / lbc, beta * area / lca), gamma * area / lab)
            near_edge = drawable & (dist.abs() < edge_tol)
            ambiguous[b] |= near_edge.any(0)
            # Keep the two nearest depths; ties go to the lower face id, as in the fast backends.
            cand_depth, cand_idx = depth.min(0)
            chunk_second = depth.topk(2, dim=0, largest=False).values[1] if len(f) > 1 else torch.full_like(best, float("inf"))
            better = cand_depth < best
            second = torch.where(better, torch.minimum(best, chunk_second), torch.minimum(second, cand_depth))
            face_id[b] = torch.where(better, cand_idx + lo, face_id[b])
            best = torch.where(better, cand_depth, best)
        ambiguous[b] |= torch.isfinite(second) & ((second - best) <= depth_rel_tol * best)
    return face_id, ambiguous
