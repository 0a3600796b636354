"""Rasteriser speed (forward, forward+backward) and agreement with the brute-force reference.

Cases: the default template and a ~24k-vertex ellipsoid at 256² and 512² on
every available device (cpu, and cuda when present). One frame renders the
normal map and depth map (one rasterisation) and projects the template's
landmarks; the backward pass is that of a weighted sum of all three.
``max_face_id_mismatch`` counts pixels, away from triangle edges, whose face
id differs from ``core.render.reference.rasterize_naive``; ``max_grad_rel_err``
is the worst relative difference between autograd and central finite
differences (float64) of directional derivatives of normals, depth and
landmark projections.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from bridge import conventions
from core.geometry.camera import Cameras
from core.render import project_surface_points, rasterize, render_depth, render_normals
from core.render.reference import rasterize_naive

from .timing import time_ms

# World -> OpenCV camera axes for a camera in front of the face (on -Y), Z up.
_FRONT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (median reported)")
    parser.add_argument(
        "--check-pairs",
        type=int,
        default=1 << 26,
        help="pixel-triangle pairs the brute-force reference tests per case; "
        "random pixels are drawn to fit (all pixels when they fit)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")


def front_camera(center: np.ndarray, extent: float, res: int, device, dtype=torch.float32, yaw_deg: float = 20.0):
    """One camera looking at ``center`` from the front, slightly to the side, framing ``extent`` metres."""
    yaw = np.deg2rad(yaw_deg)
    turn = conventions.quaternion_to_rotation([np.cos(yaw / 2), 0.0, np.sin(yaw / 2), 0.0])
    R = turn @ _FRONT
    dist = 0.6
    t = np.array([0.0, 0.0, dist]) - R @ center
    f = 0.9 * res * dist / extent
    K = np.array([[f, 0.0, res / 2], [0.0, f, res / 2], [0.0, 0.0, 1.0]])
    return Cameras.from_numpy(K, R, t, res, res, dtype=dtype, device=device)


def ellipsoid(rows: int, cols: int, radii, center) -> tuple[np.ndarray, np.ndarray]:
    """Latitude-longitude ellipsoid with (rows - 2) * cols + 2 vertices, outward winding."""
    theta = np.linspace(0, np.pi, rows)[1:-1]
    phi = np.linspace(0, 2 * np.pi, cols, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]) * radii + center
    r = rows - 2
    grid = 1 + np.arange(r * cols).reshape(r, cols)
    nxt = np.roll(grid, -1, axis=1)
    quads_a, quads_b = grid[:-1], grid[1:]
    tris = [
        np.stack([quads_a, quads_b, np.roll(quads_b, -1, 1)], -1).reshape(-1, 3),
        np.stack([quads_a, np.roll(quads_b, -1, 1), nxt[:-1]], -1).reshape(-1, 3),
        np.stack([np.zeros(cols, int), grid[0], nxt[0]], -1),
        np.stack([np.full(cols, len(verts) - 1), nxt[-1], grid[-1]], -1),
    ]
    return verts, np.concatenate(tris).astype(np.int64)


def load_meshes() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, verts (V, 3), tris (F, 3), landmark tri ids (L,), landmark bary (L, 3))."""
    from core.template import load_default

    t = load_default()
    lo, hi = t.verts.min(0), t.verts.max(0)
    center, radii = (lo + hi) / 2, (hi - lo) / 2
    ev, ef = ellipsoid(122, 200, radii, center)
    rng = np.random.default_rng(0)
    e_tri = rng.integers(0, len(ef), 100)
    e_bary = rng.dirichlet(np.ones(3), 100)
    return [
        ("template", t.verts.astype(np.float64), t.tris.astype(np.int64), t.lmk_tri.astype(np.int64), t.lmk_bary),
        ("ellipsoid24k", ev, ef, e_tri, e_bary),
    ]


def _frame(verts, faces, cams, lmk_tri, lmk_bary, weights=None):
    frags = rasterize(verts, faces, cams, backend="torch")
    normals, _ = render_normals(verts, faces, cams, fragments=frags)
    depth, _ = render_depth(verts, faces, cams, fragments=frags)
    uv, _ = project_surface_points(verts, faces, lmk_tri, lmk_bary, cams)
    if weights is None:
        return frags, normals, depth, uv
    return (normals * weights[0]).sum() + (depth * weights[1]).sum() + (uv * weights[2]).sum()


def _face_id_mismatch(verts, faces, cams, face_id, pixels) -> tuple[int, int]:
    """(mismatching unambiguous pixels, pixels checked) against the brute-force reference."""
    ref, ambiguous = rasterize_naive(verts.cpu(), faces.cpu(), cams.to("cpu"), pixels=pixels)
    got = face_id.reshape(-1).cpu()[pixels]
    return int(((got != ref[0]) & ~ambiguous[0]).sum()), int(pixels.numel())


def _grad_rel_err(name, verts_np, faces_np, lmk_tri, lmk_bary, directions: int = 3) -> float:
    """Autograd vs central differences (float64) along random vertex directions, at 64²."""
    verts0 = torch.tensor(verts_np, dtype=torch.float64)[None]
    faces = torch.tensor(faces_np)
    lo, hi = verts_np.min(0), verts_np.max(0)
    cams = front_camera((lo + hi) / 2, float((hi - lo).max()), 64, "cpu", torch.float64)
    tri, bary = torch.tensor(lmk_tri), torch.tensor(lmk_bary, dtype=torch.float64)
    base = rasterize(verts0, faces, cams, backend="torch").face_id
    g = torch.Generator().manual_seed(0)
    eps = 1e-7
    worst = 0.0
    quantities = {
        "normals": lambda v: render_normals(v, faces, cams, backend="torch")[0],
        "depth": lambda v: render_depth(v, faces, cams, backend="torch")[0],
        "projection": lambda v: project_surface_points(v, faces, tri, bary, cams)[0],
    }
    for fn in quantities.values():
        w = torch.randn(fn(verts0).shape, generator=g, dtype=torch.float64)
        done = 0
        while done < directions:
            d = torch.randn(verts0.shape, generator=g, dtype=torch.float64)
            d /= d.norm()
            # Gradients ignore visibility changes by design: skip directions that flip a pixel.
            flips = [rasterize(verts0 + s * eps * d, faces, cams, backend="torch").face_id for s in (1, -1)]
            if not all(torch.equal(f, base) for f in flips):
                continue
            v = verts0.clone().requires_grad_(True)
            (fn(v) * w).sum().backward()
            analytic = float((v.grad * d).sum())
            with torch.no_grad():
                numeric = float(((fn(verts0 + eps * d) - fn(verts0 - eps * d)) * w).sum() / (2 * eps))
            worst = max(worst, abs(analytic - numeric) / max(abs(numeric), 1e-12))
            done += 1
    return worst


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "cpu" and args.device not in devices:
        devices.append(args.device)
    meshes = load_meshes()
    cases, table = [], []
    mismatch_total, checked_total = 0, 0
    rng = torch.Generator().manual_seed(0)
    for name, verts_np, faces_np, lmk_tri_np, lmk_bary_np in meshes:
        lo, hi = verts_np.min(0), verts_np.max(0)
        for res in (256, 512):
            for dev_name in devices:
                device = torch.device(dev_name)
                cams = front_camera((lo + hi) / 2, float((hi - lo).max()), res, device)
                verts = torch.tensor(verts_np, dtype=torch.float32, device=device)[None]
                faces = torch.tensor(faces_np, device=device)
                lmk_tri = torch.tensor(lmk_tri_np, device=device)
                lmk_bary = torch.tensor(lmk_bary_np, dtype=torch.float32, device=device)
                weights = [torch.randn(s, generator=rng).to(device) for s in
                           ((1, res, res, 3), (1, res, res), (1, lmk_tri.numel(), 2))]
                leaf = verts.clone().requires_grad_(True)

                def fwd():
                    with torch.no_grad():
                        _frame(verts, faces, cams, lmk_tri, lmk_bary)

                def fwd_bwd():
                    leaf.grad = None
                    _frame(leaf, faces, cams, lmk_tri, lmk_bary, weights).backward()

                fwd_ms, fwd_min = time_ms(fwd, args.repeats, device)
                fwd_bwd_ms, fwd_bwd_min = time_ms(fwd_bwd, args.repeats, device)
                face_id = _frame(verts, faces, cams, lmk_tri, lmk_bary)[0].face_id
                n_pixels = min(res * res, max(1, args.check_pairs // faces_np.shape[0]))
                pixels = torch.randperm(res * res, generator=rng)[:n_pixels].sort().values
                mismatch, checked = _face_id_mismatch(verts, faces, cams, face_id, pixels)
                mismatch_total += mismatch
                checked_total += checked
                case = {
                    "name": name,
                    "verts": int(verts_np.shape[0]),
                    "tris": int(faces_np.shape[0]),
                    "res": res,
                    "device": dev_name,
                    "fwd_ms": round(fwd_ms, 3),
                    "fwd_bwd_ms": round(fwd_bwd_ms, 3),
                    "fwd_ms_min": round(fwd_min, 3),
                    "fwd_bwd_ms_min": round(fwd_bwd_min, 3),
                    "coverage": round(float((face_id >= 0).float().mean()), 4),
                    "face_id_mismatch": mismatch,
                    "pixels_checked": checked,
                }
                cases.append(case)
                print(f"{name} {res}² {dev_name}: {fwd_bwd_ms:.1f} ms fwd+bwd", file=sys.stderr, flush=True)
                table.append(dict(case))
    template = meshes[0]
    grad_err = _grad_rel_err(*template)
    return {
        "cases": cases,
        "max_face_id_mismatch": mismatch_total,
        "pixels_checked": checked_total,
        "max_grad_rel_err": grad_err,
        "threads": args.threads,
        # Other processes on the machine inflate wall-clock medians; the minimum and this show how much.
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "table": table,
    }
