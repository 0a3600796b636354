"""Loss timing: forward + backward of each term on a ~4.3k-vertex quad mesh.

``likeness bench losses --json F`` prints one row per term and writes
``{"verts", "faces", "device", "dtype", "threads", "cases": [{"name", "fwd_ms", "fwd_bwd_ms",
"fwd_bwd_ms_min"}]}``: medians over the repeats, plus the fastest forward + backward
(the figure to trust on a machine shared with other work).
"""

from __future__ import annotations


import torch

from core.geometry import CurveSet, Laplacian, MeshTopology
from core.geometry.primitives import torus, triangulate
from core.losses import (
    LandmarkLayout,
    conformal_loss,
    curve_flow_loss,
    displacement_loss,
    evgcc_loss,
    face_flip_loss,
    interocular_distance,
    landmark_loss,
    laplacian_energy,
    normal_consistency_loss,
    symmetry_loss,
)

from .timing import time_ms


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per term (median reported)")
    parser.add_argument("--major", type=int, default=66, help="torus rings (verts = major * minor)")
    parser.add_argument("--minor", type=int, default=66, help="vertices per ring")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def _cases(device: torch.device, dtype: torch.dtype, n_major: int, n_minor: int):
    template, quads = torus(n_major, n_minor, dtype=dtype)
    faces = triangulate(quads)
    topo = MeshTopology.from_faces(faces, template.shape[0], quads).to(device)
    faces = faces.to(device)
    template = template.to(device)[None]
    g = torch.Generator().manual_seed(0)
    start = template + 0.005 * torch.randn(template.shape, generator=g, dtype=dtype).to(device)
    reflected = template[0] * template.new_tensor([-1.0, 1.0, 1.0])
    mirror = torch.cdist(template[0], reflected).argmin(dim=1)
    rings = [list(range(r * n_minor, r * n_minor + 12)) for r in range(4)]
    curves = CurveSet.from_sequences(rings, topo.num_verts, device)
    uniform = Laplacian.uniform(topo, dtype)
    cotangent = Laplacian.cotangent(template[0], topo)
    detected = 100 * torch.rand(1, 478, 2, generator=g, dtype=dtype).to(device)
    contours = [list(range(10, 46)), list(range(50, 66)), list(range(70, 86))]
    layout = LandmarkLayout.from_ids(478, [0, 1, 2, 3], contours, device)
    predicted = torch.nn.functional.normalize(torch.randn(1, 256, 256, 3, generator=g, dtype=dtype), dim=-1).to(device)
    mask = torch.ones(1, 256, 256, dtype=dtype, device=device)
    noise = torch.randn(predicted.shape, generator=g, dtype=dtype).to(device)
    rendered = torch.nn.functional.normalize(predicted + 0.2 * noise, dim=-1)
    projected = detected + torch.randn(detected.shape, generator=g, dtype=dtype).to(device)
    scale = interocular_distance(detected, 0, 1)
    return {
        "normal_consistency": (rendered, lambda n: normal_consistency_loss(predicted, n, mask)),
        "landmarks": (projected, lambda p: landmark_loss(p, detected, layout, scale)),
        "evgcc": (start, lambda v: evgcc_loss(v, template, topo)),
        "conformal": (start, lambda v: conformal_loss(v, template, topo.polygon_corners, 0.05)),
        "face_flip": (start, lambda v: face_flip_loss(v, template, faces, 0.05)),
        "curve_flow": (start, lambda v: curve_flow_loss(v, template, curves)),
        "displacement": (start, lambda v: displacement_loss(v - template)),
        "laplacian_uniform": (start, lambda v: laplacian_energy(v, template, uniform)),
        "laplacian_cotangent": (start, lambda v: laplacian_energy(v, template, cotangent)),
        "symmetry": (start, lambda v: symmetry_loss(v, mirror)),
    }


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cases = _cases(device, dtype, args.major, args.minor)
    rows = []
    for name, (value, loss_fn) in cases.items():
        verts = value.clone().requires_grad_(True)

        def forward():
            with torch.no_grad():
                loss_fn(verts)

        def forward_backward():
            verts.grad = None
            loss_fn(verts).backward()

        fwd_ms, _ = time_ms(forward, args.repeats, device)
        fwd_bwd_ms, fwd_bwd_min = time_ms(forward_backward, args.repeats, device)
        rows.append({"name": name, "fwd_ms": fwd_ms, "fwd_bwd_ms": fwd_bwd_ms, "fwd_bwd_ms_min": fwd_bwd_min})
    return {
        "verts": args.major * args.minor,
        "faces": int(2 * args.major * args.minor),
        "device": str(device),
        "dtype": args.dtype,
        "threads": args.threads,
        "cases": rows,
        "table": rows,
    }
