"""Template deform: forward+backward time of the default template, for B people at once.

``--batch 1,8,32`` gives a row per batch size: B people deformed in one call (each with
its own controllers, joints and offsets). With ``--render RES`` each person's skin is
also rendered as a RES² normal map through its own camera and the backward pass runs
through the render too: the core of one fit iteration (the losses' small terms aside),
so ``per_person_ms`` against B shows what fitting B people in one batched optimisation
would save on this device over fitting them one after another.

Times are medians (``deform_fwd_bwd_ms``) and minima over repeats; on a
shared CPU the minimum is the better estimate of the cost itself.
"""

from __future__ import annotations

import numpy as np
import torch

from .timing import time_ms


def add_arguments(parser) -> None:
    parser.add_argument("--batch", default="1", help="people per call; a comma-separated list gives a row each")
    parser.add_argument("--render", type=int, default=0, metavar="RES",
                        help="also render each person's normal map at RES² (0: deform only)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)


def batch_sizes(text) -> list[int]:
    try:
        sizes = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--batch: comma-separated whole numbers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"--batch: sizes of at least 1, got {text!r}")
    return sizes


def _row(model, b: int, res: int, repeats: int, device) -> dict:
    from core.geometry.camera import Cameras
    from core.render import render_normals
    from core.template import JOINT_PARAM_DIM

    from .render import front_camera

    g = torch.Generator().manual_seed(0)
    r = (torch.rand(b, model.num_controllers, generator=g) * 0.5).to(device).requires_grad_()
    theta = (torch.randn(b, model.num_joints, JOINT_PARAM_DIM, generator=g) * 0.02).to(device).requires_grad_()
    d = torch.zeros(b, model.num_verts, 3, device=device, requires_grad=True)
    cams = None
    if res:
        verts = model.template.verts.astype(np.float64)
        centre = verts.mean(0)
        extent = float(np.ptp(verts, 0).max())
        cams = Cameras.cat([front_camera(centre, extent, res, device, yaw_deg=yaw)
                            for yaw in np.linspace(-20.0, 20.0, b)])

    def fwd():
        with torch.no_grad():
            model.deform(r, theta, d)

    def fwd_bwd():
        if cams is None:
            out = model.deform(r, theta, d)
            (out.verts.square().sum() + out.parts.square().sum()).backward()
            return
        out = model.deform(r, theta, d, parts=False)
        normals, mask = render_normals(out.verts, model.tris, cams, cull_back=True)
        ((normals * mask[..., None]).square().sum() + out.verts.square().sum()).backward()

    fwd_ms, fwd_min = time_ms(fwd, repeats, device)
    fb_ms, fb_min = time_ms(fwd_bwd, repeats, device)
    return {"device": str(device), "batch": b, "render": res, "verts": model.num_verts, "joints": model.num_joints,
            "controllers": model.num_controllers, "deform_fwd_ms": fwd_ms, "deform_fwd_bwd_ms": fb_ms,
            "deform_fwd_bwd_ms_min": fb_min, "per_person_ms": round(fb_min / b, 3)}


def run(args) -> dict:
    from core.template import TemplateModel, load_default

    torch.set_num_threads(args.threads)
    sizes = batch_sizes(args.batch)
    device = torch.device(args.device)
    model = TemplateModel(load_default(), device=device)
    rows = [_row(model, b, args.render, args.repeats, device) for b in sizes]
    one = rows[0]["per_person_ms"] if sizes[0] == 1 else None
    for row in rows:
        row["speedup_per_person"] = round(one / row["per_person_ms"], 2) if one else None
    return {**rows[0], "threads": args.threads, "rows": rows, "table": rows}
