"""Topology-aware bundle adjustment: cameras and template vertices in one objective.

E(X, cams) = mean_c w_c ρ(|π_v(Σ_k b_ck X_ck) − x_c|² / σ_v²)          reprojection (Cauchy)
           + λ_pt · mean_c w_c ρ(|R_v p_c + t_v − q_c|² / σ_pt²)            point maps, when given
           + λ_L · mean_i |L(X − X0)_i|² (mm²)                             Laplacian energy
           + λ_g · |mean(X − X0)|² (mm²)                                    translation gauge

X are the template's vertices (the Laplacian keeps the template's local
shape where views disagree or see nothing), cameras are per view (rotation
update, translation, log focal). The vertex update is optimised through the
"large steps" parameterisation X = X0 + (I + λ_s L)⁻¹ u, which only
preconditions the gradient descent (smooth corrections travel across the
mesh in a few steps); the Laplacian energy itself stays in the objective.
Optimisation runs in rounds: after each, correspondences whose reprojection
error exceeds max(min_px, k · 1.4826 · MAD) in their view are rejected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from core.geometry.camera import Cameras, axis_angle_to_matrix, project_camera_points
from core.geometry.constants import MM
from core.geometry.laplacian import Laplacian
from core.geometry.large_steps import LargeSteps
from core.geometry.topology import MeshTopology

from .correspondences import ViewCorrespondences


@dataclass
class BAOptions:
    """Settings of the topology-aware bundle adjustment (plain data, JSON-able)."""

    rounds: int = 3                  # optimise → reject outliers, this many times
    iterations: int = 150            # Adam steps per round
    robust_scale: float = 0.006      # Cauchy scale σ_v as a fraction of the image's long side
    laplacian_weight: float = 0.005  # λ_L on mm² of differential-coordinate change
    point_weight: float = 1.0        # λ_pt
    point_scale_mm: float = 3.0      # σ_pt
    gauge_weight: float = 1e-3       # λ_g
    large_steps_lambda: float = 20.0
    lr_verts: float = 0.3            # Adam step on u (mm)
    lr_rotation: float = 6e-3        # radians
    lr_translation: float = 3e-3     # metres
    lr_focal: float = 6e-3           # log focal
    refine_focal: bool = True
    shared_focal: bool = False       # one focal scale for all views (photos from one camera)
    outlier_mad: float = 3.0         # k
    outlier_min: float = 0.015       # min_px as a fraction of the image's long side

    def __post_init__(self):
        if self.rounds < 1 or self.iterations < 0:
            raise ValueError("bundle adjustment needs rounds >= 1 and iterations >= 0")
        if self.robust_scale <= 0 or self.point_scale_mm <= 0:
            raise ValueError("robust scales must be positive")


@dataclass
class BAResult:
    """verts: (N, 3) float32; cameras: per view (batch-1 float64); inliers: per view (C,) bool."""

    verts: np.ndarray
    cameras: list[Cameras]
    inliers: list[np.ndarray]
    rms_px: list[float]
    seconds: float
    history: list[float] = field(default_factory=list)


def smoothing_solver(tris: torch.Tensor, num_verts: int, lam: float):
    """u (N, 3) -> (I + lam (D − A))⁻¹ u, Cholesky-factored once (the fitter's large-steps solve)."""
    return LargeSteps(MeshTopology.from_faces(tris, num_verts), lam, tris.device)


def _padded(corrs: list[ViewCorrespondences], device, dtype) -> dict[str, torch.Tensor]:
    """Views stacked to (V, C_max, ...) with zero weight in the padding (batched matmuls, no per-point gathers)."""
    cmax = max(len(c.vert_ids) for c in corrs)
    V = len(corrs)
    vid = np.zeros((V, cmax, 3), np.int64)
    bary = np.zeros((V, cmax, 3), np.float32)
    pix = np.zeros((V, cmax, 2), np.float32)
    w = np.zeros((V, cmax), np.float32)
    pts = np.zeros((V, cmax, 3), np.float32)
    pw = np.zeros((V, cmax), np.float32)
    for i, c in enumerate(corrs):
        k = len(c.vert_ids)
        vid[i, :k], bary[i, :k], pix[i, :k], w[i, :k] = c.vert_ids, c.bary, c.pixels, c.weight
        if c.points_cam is not None:
            pts[i, :k], pw[i, :k] = c.points_cam, c.point_weight
    out = {"vid": torch.as_tensor(vid, device=device), "bary": torch.as_tensor(bary, device=device, dtype=dtype),
           "pix": torch.as_tensor(pix, device=device, dtype=dtype), "w": torch.as_tensor(w, device=device, dtype=dtype),
           "count": [len(c.vert_ids) for c in corrs]}
    if pw.any():
        out["pts"] = torch.as_tensor(pts, device=device, dtype=dtype)
        out["pw"] = torch.as_tensor(pw, device=device, dtype=dtype)
    return out


def topology_ba(verts: np.ndarray, tris: np.ndarray, corrs: list[ViewCorrespondences], cameras: list[Cameras],
                options: BAOptions | None = None, device: str = "cpu", control=None) -> BAResult:
    """Solve per-view cameras and the template's vertices from correspondences.

    verts: (N, 3) float32 initial vertices (e.g. the rig-stage fit); tris: (T, 3) int64.
    corrs: one per view, aligned with ``cameras`` (the initial cameras, e.g. PnP).
    control: optional ``FitControl`` (cancel/pause between steps).
    """
    opts = options or BAOptions()
    if len(corrs) != len(cameras) or not corrs:
        raise ValueError(f"bundle adjustment needs one camera per view, got {len(cameras)} for {len(corrs)} views")
    n = len(verts)
    for c in corrs:
        if c.vert_ids.size and (c.vert_ids.max() >= n or c.vert_ids.min() < 0):
            raise ValueError(f"{c.name}: correspondences name vertices outside 0..{n - 1}")
    start = time.perf_counter()
    dt = torch.float32
    dev = torch.device(device)
    X0 = torch.as_tensor(verts, device=dev, dtype=dt)
    T = torch.as_tensor(tris, device=dev, dtype=torch.int64)
    laplacian = Laplacian.uniform(MeshTopology.from_faces(T, n), dt)
    smooth = smoothing_solver(T, n, opts.large_steps_lambda)
    flat = _padded(corrs, dev, dt)
    size = torch.as_tensor([max(c.width, c.height) for c in corrs], device=dev, dtype=dt)
    sigma = (opts.robust_scale * size)[:, None]
    K0 = torch.cat([c.K for c in cameras]).to(device=dev, dtype=dt)
    R0 = torch.cat([c.R for c in cameras]).to(device=dev, dtype=dt)
    u = torch.zeros(n, 3, device=dev, dtype=dt, requires_grad=True)
    rot = torch.zeros(len(cameras), 3, device=dev, dtype=dt, requires_grad=True)
    trans = torch.cat([c.t for c in cameras]).to(device=dev, dtype=dt).clone().requires_grad_(True)
    log_f = torch.zeros(1 if opts.shared_focal else len(cameras), device=dev, dtype=dt, requires_grad=True)
    groups = [{"params": [u], "lr": opts.lr_verts}, {"params": [rot], "lr": opts.lr_rotation},
              {"params": [trans], "lr": opts.lr_translation}]
    if opts.refine_focal:
        groups.append({"params": [log_f], "lr": opts.lr_focal})
    inlier = flat["w"] > 0

    def state():
        X = X0 + smooth(u) / MM
        R = axis_angle_to_matrix(rot) @ R0
        scale = torch.exp(log_f).expand(len(cameras))
        K = K0.clone()
        K[:, 0, 0] = K0[:, 0, 0] * scale
        K[:, 1, 1] = K0[:, 1, 1] * scale
        return X, K, R, trans

    def residuals(X, K, R, t):
        pts = (X[flat["vid"]] * flat["bary"][..., None]).sum(-2)
        xc = pts @ R.transpose(1, 2) + t[:, None]  # the views' image sizes differ: no one Cameras batch
        uv, _ = project_camera_points(xc, K)
        return (uv - flat["pix"]).norm(dim=-1), xc

    history = []
    for _ in range(opts.rounds):
        opt = torch.optim.Adam(groups)
        w = flat["w"] * inlier
        wsum = w.sum().clamp(min=1e-9)
        for _ in range(opts.iterations):
            if control is not None:
                control.checkpoint()
            opt.zero_grad(set_to_none=True)
            X, K, R, t = state()
            r, xc = residuals(X, K, R, t)
            energy = (w * torch.log1p((r / sigma) ** 2)).sum() / wsum
            if "pts" in flat:
                pw = flat["pw"] * inlier
                d = ((xc - flat["pts"]).norm(dim=-1) * MM) / opts.point_scale_mm
                energy = energy + opts.point_weight * (pw * torch.log1p(d ** 2)).sum() / pw.sum().clamp(min=1e-9)
            dX = (X - X0) * MM
            lap = laplacian.apply(dX[None])[0]
            energy = energy + opts.laplacian_weight * (lap ** 2).sum(-1).mean()
            energy = energy + opts.gauge_weight * dX.mean(0).pow(2).sum()
            energy.backward()
            opt.step()
            history.append(float(energy.detach()))
        with torch.no_grad():
            r, _ = residuals(*state())
            inlier = _inliers(r, flat["w"] > 0, size, opts)

    with torch.no_grad():
        X, K, R, t = state()
        r, _ = residuals(X, K, R, t)
    inl = inlier.cpu().numpy()
    rr = r.cpu().numpy()
    cams, inliers, rms = [], [], []
    for i, (c, k) in enumerate(zip(cameras, flat["count"])):
        cams.append(Cameras(K[i:i + 1].cpu().double(), R[i:i + 1].cpu().double(),
                            t[i:i + 1].detach().cpu().double(), c.width, c.height))
        inliers.append(inl[i, :k])
        used = rr[i, :k][inl[i, :k]]
        rms.append(float(np.sqrt((used ** 2).mean())) if used.size else float("nan"))
    return BAResult(X.cpu().numpy().astype(np.float32), cams, inliers, rms, time.perf_counter() - start, history)


def _inliers(r: torch.Tensor, seen: torch.Tensor, size: torch.Tensor, opts: BAOptions) -> torch.Tensor:
    """r (V, C) px residuals, seen (V, C) bool -> (V, C) bool kept: below max(min_px, med + k·1.4826·MAD) per view."""
    nan = torch.full_like(r, float("nan"))
    rs = torch.where(seen, r, nan)
    med = rs.nanmedian(dim=1, keepdim=True).values
    mad = (rs - med).abs().nanmedian(dim=1, keepdim=True).values
    thresh = torch.maximum(med + opts.outlier_mad * 1.4826 * mad, opts.outlier_min * size[:, None])
    return seen & (r <= thresh)
