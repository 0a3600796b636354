"""Fitter on synthetic ground truth: accuracy, mesh quality and time per variant.

Each case (core/bench/synthetic.py) is fitted from the neutral template by
every variant: the full rig → joint → vertex schedule, the paper's ablations
(rig only, rig + joint, vertex only in one stage, full without EV-GCC, full
without the conformal term), the vertex stage on plain offsets instead of the
large-steps parameterisation, the full schedule told the camera's focal
length (as a photo's EXIF would; pose still unknown), and trimesh's
non-rigid ICP (Amberg) given the ground-truth mesh itself. Metrics on the face
mask after a similarity alignment to the ground truth: RMSE in mm, mean normal
consistency, flipped faces, smallest corner angle; seconds per stage. The
RMSE is split two ways: along the ground truth's normals (surface shape)
against along the surface (vertices sliding: correspondence, which normal maps
do not observe), and over the vertices that face the hidden camera against
those that do not (unobserved in one view). Per case it also gives two error
bounds built from the ground truth (core/bench/bounds.py): what a result
exact wherever the camera sees would score, and one whose sliding along the
surface is known only at the landmarks. Writes a PNG with error
heat maps and a bar chart next to the JSON.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from core.bench.bounds import bounds as case_bounds
from core.bench.metrics import facing_camera, mesh_metrics
from core.geometry.mesh_layout import vertex_normals

VARIANTS = ("full", "known_focal", "rig_only", "rig_joint", "vertex_only", "no_evgcc", "no_conformal", "plain_offsets",
            "nricp")


def add_arguments(p) -> None:
    p.add_argument("--cases", type=int, default=5, help="number of synthetic cases")
    p.add_argument("--res", type=int, default=256, help="ground-truth normal map size")
    p.add_argument("--preset", default="default", help="fit preset for the fitted variants")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--noise", type=float, default=0.0, help="landmark pixel noise (std)")
    p.add_argument("--seed", type=int, default=1, help="first case seed")
    p.add_argument("--png", default=None, help="figure path (default: next to --json)")
    p.add_argument("--no-bounds", dest="bounds", action="store_false",
                   help="skip the per-case error bounds (core/bench/bounds.py)")


def schedule_overrides(variant: str, preset: str) -> dict:
    from core.fit.schedule import make_schedule

    full = make_schedule(preset)
    if variant in ("full", "known_focal"):
        return {}
    if variant == "rig_only":
        return {"only": ["rig"]}
    if variant == "rig_joint":
        return {"only": ["rig", "joint"]}
    if variant == "vertex_only":
        total = sum(s.iterations for s in full)
        vertex = next(s for s in full if s.name == "vertex")
        return {"only": ["vertex"], "stages": {"vertex": {
            "iterations": total,
            "lr": {**vertex.lr, "camera": 0.002, "focal": 0.005},
        }}}
    if variant == "plain_offsets":
        # The vertex stage without the large-steps parameterisation (its step tuned for plain offsets).
        return {"stages": {"vertex": {"large_steps_lambda": 0.0, "lr": {"offsets": 1e-4}}}}
    term = {"no_evgcc": "evgcc", "no_conformal": "conformal"}[variant]
    return {"stages": {s.name: {"weights": {term: 0.0}} for s in full if term in s.weights}}


def run_nricp(template, gt: np.ndarray) -> np.ndarray:
    import trimesh
    from trimesh.registration import nricp_amberg

    src = trimesh.Trimesh(template.verts.astype(np.float64), template.tris, process=False)
    dst = trimesh.Trimesh(gt.astype(np.float64), template.tris, process=False)
    # Landmarks as NR-ICP is used in practice: the embedded landmarks' nearest vertices,
    # with their ground-truth positions (closest points alone let vertices slide).
    ids = np.unique(template.tris[template.lmk_tri[template.lmk_kind > 0], np.argmax(template.lmk_bary[template.lmk_kind > 0], 1)])
    return np.asarray(nricp_amberg(src, dst, source_landmarks=ids, target_positions=gt[ids].astype(np.float64)))


def run(args) -> dict:
    import torch

    from core.bench.synthetic import FACE_REGION, make_case
    from core.fit.options import FitOptions
    from core.fit.pipeline import fit_views
    from core.template import load_default

    torch.set_num_threads(2)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    template = load_default()
    face_ids = template.regions[FACE_REGION]
    cases, table, heat, full_results = [], [], [], []
    for i in range(args.cases):
        case = make_case(template, seed=args.seed + i, res=args.res, pixel_noise=args.noise)
        entry = {"name": case.name, "yaw_deg": case.yaw_deg, "pitch_deg": case.pitch_deg, "variants": {}}
        facing = facing_camera(case, template.tris)
        if getattr(args, "bounds", True):
            entry["bounds"] = case_bounds(template, case, facing, face_ids)
            print(f"{case.name} bounds: " + "; ".join(
                f"{k} rmse {m['rmse_mm']:.3f} mm nc {m['nc']:.4f} flipped {m['flipped_faces']}"
                for k, m in entry["bounds"].items()), flush=True)
        for variant in variants:
            t0 = time.perf_counter()
            stages = []
            if variant == "nricp":
                verts = run_nricp(template, case.verts)
            else:
                options = FitOptions(preset=args.preset, schedule=schedule_overrides(variant, args.preset))
                view = case.view
                if variant == "known_focal":
                    view = dataclasses.replace(view, focal_px=float(case.K[0, 0]))
                result = None
                for rec in fit_views(template, [view], options, device=args.device):
                    result = rec.result or result
                verts = result.arrays["verts"]
                if variant == "full":
                    full_results.append(result)
                stages = [{"name": s["name"], "iterations": s["iterations"], "seconds": s["seconds"]}
                          for s in result.meta["stages"]]
            seconds = time.perf_counter() - t0
            m = mesh_metrics(verts, case.verts, template.tris, face_ids, facing, template.verts)
            if variant == "full" and len(heat) < 3:
                heat.append((case.name, verts, m["_err_mm"]))
            m.pop("_err_mm")
            m.update({"seconds": round(seconds, 2), "stages": stages})
            entry["variants"][variant] = m
            table.append({"case": case.name, "variant": variant, "rmse_mm": m["rmse_mm"], "nc": m["nc"],
                          "flipped": m["flipped_faces"], "min_angle": m["min_angle_deg"], "seconds": m["seconds"]})
            print(f"{case.name} {variant:<13} rmse {m['rmse_mm']:.3f} mm (normal {m['rmse_normal_mm']:.2f}, "
                  f"tangent {m['rmse_tangent_mm']:.2f}; facing {m['rmse_facing_mm']:.2f}, "
                  f"not facing {m['rmse_not_facing_mm']:.2f})  nc {m['nc']:.4f}  "
                  f"flipped {m['flipped_faces']} ({m['folds_made']} made, ground truth folds {m['gt_folded_vs_template']})  "
                  f"{seconds:.1f} s", flush=True)
        cases.append(entry)
    summary = {}
    for variant in variants:
        rows = [c["variants"][variant] for c in cases]
        summary[variant] = {
            "rmse_mm_median": float(np.median([r["rmse_mm"] for r in rows])),
            "rmse_mm_max": float(np.max([r["rmse_mm"] for r in rows])),
            **{f"{key}_median": float(np.median([r[key] for r in rows]))
               for key in ("rmse_normal_mm", "rmse_tangent_mm", "rmse_facing_mm", "rmse_not_facing_mm")},
            "nc_median": float(np.median([r["nc"] for r in rows])),
            "flipped_faces_max": int(np.max([r["flipped_faces"] for r in rows])),
            "folds_made_max": int(np.max([r["folds_made"] for r in rows])),
            "gt_folded_vs_template_max": int(np.max([r["gt_folded_vs_template"] for r in rows])),
            "seconds_median": float(np.median([r["seconds"] for r in rows])),
        }
    bound_summary = {}
    for name in (cases[0].get("bounds") or {}) if cases else ():
        rows = [c["bounds"][name] for c in cases]
        bound_summary[name] = {"rmse_mm_median": float(np.median([r["rmse_mm"] for r in rows])),
                               "rmse_mm_max": float(np.max([r["rmse_mm"] for r in rows])),
                               "nc_median": float(np.median([r["nc"] for r in rows]))}
        print(f"bound {name:<10} (core/bench/bounds.py): median rmse {bound_summary[name]['rmse_mm_median']:.3f} mm, "
              f"worst {bound_summary[name]['rmse_mm_max']:.3f}, median nc {bound_summary[name]['nc_median']:.4f}",
              flush=True)
    animation = _animation_check(template, full_results[0]) if full_results else None
    png = args.png or (str(pathlib.Path(args.json).with_suffix(".png")) if args.json else None)
    if png:
        _figure(png, template, heat, summary)
    return {"cases": cases, "summary": summary, "res": args.res, "device": args.device, "preset": args.preset,
            "figure": png, "animation_check": animation, "bounds": bound_summary, "table": [{"variant": k, **v} for k, v in summary.items()]}


def _animation_check(template, result) -> dict:
    """Pose the first case's full result and the template at extremes under Blender
    (scripts/animation_check.py in a subprocess: core never imports bpy)."""
    import json
    import subprocess
    import sys
    import tempfile

    from core.fit.outputs import write_result_files, write_template_glb

    script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "animation_check.py"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        write_result_files(tmp, template, result)
        write_template_glb(tmp / "template.glb", template)
        res = subprocess.run([sys.executable, str(script), str(tmp / "result.glb"), str(tmp / "template.glb"),
                              "--json", str(tmp / "anim.json")], capture_output=True, text=True)
        if res.returncode != 0:
            return {"error": res.stderr[-2000:]}
        check = json.loads((tmp / "anim.json").read_text())
    return {k: v for k, v in check.items() if k not in ("result", "template")} | {"poses_detail": check["result"]}


def _figure(path, template, heat, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(heat) + 1, figsize=(4 * (len(heat) + 1), 4))
    axes = np.atleast_1d(axes)
    for ax, (name, verts, err) in zip(axes, heat):
        tri = template.tris
        front = verts[:, [0, 2]]
        facing = vertex_normals(verts.astype(np.float64), tri)[tri].mean(1)[:, 1] < 0
        pc = ax.tripcolor(front[:, 0], front[:, 1], tri[facing], err, shading="gouraud", cmap="magma",
                          vmin=0, vmax=max(1.0, float(np.percentile(err, 99))))
        ax.set_title(f"{name}: error (mm)")
        ax.set_aspect("equal")
        ax.axis("off")
        fig.colorbar(pc, ax=ax, shrink=0.7)
    ax = axes[-1]
    names = list(summary)
    ax.bar(names, [summary[n]["rmse_mm_median"] for n in names], color="#4a7ab5")
    ax.set_ylabel("median face RMSE (mm)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
