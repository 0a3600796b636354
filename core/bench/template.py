"""Template deform: forward+backward time of the default template.

Times are medians (``deform_fwd_bwd_ms``) and minima over repeats; on a
shared CPU the minimum is the better estimate of the cost itself.
"""

from __future__ import annotations

import torch

from .timing import time_ms


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)


def run(args) -> dict:
    from core.template import JOINT_PARAM_DIM, TemplateModel, load_default

    torch.set_num_threads(args.threads)
    template = load_default()
    device = torch.device(args.device)
    model = TemplateModel(template, device=device)
    b = args.batch
    g = torch.Generator().manual_seed(0)
    r = (torch.rand(b, model.num_controllers, generator=g) * 0.5).to(device).requires_grad_()
    theta = (torch.randn(b, model.num_joints, JOINT_PARAM_DIM, generator=g) * 0.02).to(device).requires_grad_()
    d = torch.zeros(b, model.num_verts, 3, device=device, requires_grad=True)

    def fwd():
        with torch.no_grad():
            model.deform(r, theta, d)

    def fwd_bwd():
        out = model.deform(r, theta, d)
        (out.verts.square().sum() + out.parts.square().sum()).backward()

    fwd_ms, fwd_min = time_ms(fwd, args.repeats, device)
    fb_ms, fb_min = time_ms(fwd_bwd, args.repeats, device)
    row = {"device": str(device), "batch": b, "verts": model.num_verts, "joints": model.num_joints,
           "controllers": model.num_controllers, "deform_fwd_ms": fwd_ms, "deform_fwd_bwd_ms": fb_ms,
           "deform_fwd_bwd_ms_min": fb_min}
    return {**row, "threads": args.threads, "table": [row]}
