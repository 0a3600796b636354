"""Multi-view fitting on photo-like renders: error and time against the number of views.

Ground truth: the fitter benchmark's identities (core/bench/synthetic.py,
shapes the controllers do not span) rendered with Cycles under the ``bpy``
module (scripts/render_multiview.py, run in its own process) from 16 known
cameras around the face; MediaPipe FaceMesh runs on every render, so the
landmarks are real detections (with the detector's guesses on hidden points).
Renders are cached under ``$LIKENESS_CACHE/multiview`` (default
``~/.cache/likeness/multiview``), keyed by identity seed, a hash of the
mesh, image size, samples and camera.

For each number of views (the first k of a fixed camera order, so k views
always contain the k-1 before them) and each bundle-adjustment variant, the
photos go through ``core.fit.pipeline.fit_views`` with the variant as its
``multiview_ba`` option: rig stage on all views, the bundle-adjustment stage,
then the joint and vertex stages with the adjusted cameras. Reports per k the face RMSE (mm, after similarity
alignment), the mean camera rotation error (degrees, after the same
alignment), seconds in the bundle adjustment and for the whole fit.

Per identity it also measures the detector's bias: MediaPipe's surface
landmarks triangulated from all detected views with the true cameras, against
the points of the template's embedding on the ground truth. That part of the
landmark error is the same in every view, so adding views does not remove it.
``--cues exact`` fits on the ground truth's own landmark points (and normal
maps) instead, to show what the pipeline gives without it.

``"dense"`` in the JSON: the bundle adjustments alone on exact per-vertex
correspondences (what a perfect UV provider gives: 0.3 px noise, 10 %
gross outliers) of a known identity, from PnP-quality cameras.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

# Bundle-adjustment variants (``multiview_ba`` fit option); "no_ba" is the joint fit from per-view PnP alone.
VARIANTS = ("topology_ba", "colmap_then_largesteps", "no_ba")
# What each view gives the fitter: MediaPipe's landmarks on the render alone, or
# with a camera-space normal map of the ground truth (standing in for a
# normal-map provider, as in ``bench fit``); "exact" swaps MediaPipe's points
# for the ground truth's own (the embedded landmarks projected through the true
# camera, same weights) and keeps the normal maps: a detector with no bias.
CUES = ("landmarks", "normals", "exact")
DEFAULT_CUES = ("landmarks", "normals")
# Camera order (yaw, pitch) in degrees: the first k spread out for every k.
CAMERA_ORDER = (
    (0, 0), (30, 5), (-30, -5), (0, 15), (15, -12), (-15, 10), (40, 0), (-40, 0),
    (20, 15), (-20, -15), (35, -10), (-35, 12), (8, -15), (-8, 8), (25, 0), (-25, 0),
)
DISTANCE_M = 0.75
LENS_MM = 85.0
SENSOR_MM = 36.0
REPO = pathlib.Path(__file__).resolve().parents[2]


def add_arguments(p) -> None:
    p.add_argument("--cases", type=int, default=2, help="number of synthetic identities")
    p.add_argument("--seed", type=int, default=1, help="first identity seed")
    p.add_argument("--views", default="1,2,4,8,16", help="comma-separated view counts (<= 16)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--res", type=int, default=256, help="render size (pixels)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    p.add_argument("--preset", default="default", help="fit preset")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--cache", default=None, help="render cache folder (default $LIKENESS_CACHE/multiview)")
    p.add_argument("--cues", default=",".join(DEFAULT_CUES),
                   help="comma-separated subset of " + ",".join(CUES) + " (what each view gives the fitter)")


def cache_root(arg: str | None) -> pathlib.Path:
    if arg:
        return pathlib.Path(arg)
    root = os.environ.get("LIKENESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "likeness")
    return pathlib.Path(root) / "multiview"


def eye_spheres(template, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, 3) eyeball centres moved with each eye ring, (2,) radii, for an identity's skin ``verts``."""
    centres, radii = [], []
    for part, ring in (("eyeball.L", "eye_l_ring"), ("eyeball.R", "eye_r_ring")):
        pv = template.part_verts[template.part_vert_part == template.part_names.index(part)]
        ids = template.regions[ring]
        shift = verts[ids].mean(0) - template.verts[ids].mean(0)
        centres.append(0.5 * (pv.min(0) + pv.max(0)) + shift)
        radii.append(0.5 * float((pv.max(0) - pv.min(0)).max()))
    return np.array(centres), np.array(radii)


def render_identity(template, seed: int, res: int, samples: int, cache: pathlib.Path):
    """Render (or read from the cache) the 16 views of identity ``seed``.

    Returns (case, cameras (batch-1 ``Cameras``) in CAMERA_ORDER, png paths).
    """
    import torch

    from core.bench.synthetic import FACE_REGION, camera_looking_at, make_case

    case = make_case(template, seed=seed, res=res)
    verts = case.verts
    centre = verts[template.regions[FACE_REGION]].mean(0)
    f = LENS_MM / SENSOR_MM * res
    cams = [camera_looking_at(centre, yaw, pitch, DISTANCE_M, f, res) for yaw, pitch in CAMERA_ORDER]
    digest = hashlib.sha1(verts.tobytes() + template.tris.tobytes()).hexdigest()[:10]
    folder = cache / f"seed{seed}_{digest}_{res}px_{samples}spp"
    names = [f"cam_yaw{yaw:+d}_pitch{pitch:+d}_d{DISTANCE_M:.2f}" for yaw, pitch in CAMERA_ORDER]
    paths = [folder / f"{n}.png" for n in names]
    if not all(p.exists() for p in paths):
        folder.mkdir(parents=True, exist_ok=True)
        centres, radii = eye_spheres(template, verts)
        scene = folder / "scene.npz"
        np.savez(scene, verts=verts, poly_verts=template.poly_verts, poly_start=template.poly_start,
                 uvs=template.uvs, eye_centres=centres, eye_radius=radii,
                 K=torch.cat([c.K for c in cams]).numpy(), R=torch.cat([c.R for c in cams]).numpy(),
                 t=torch.cat([c.t for c in cams]).numpy(),
                 width=res, height=res, samples=samples, names=np.array(names))
        script = REPO / "scripts" / "render_multiview.py"
        proc = subprocess.run([sys.executable, str(script), str(scene), str(folder)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"rendering identity {seed} failed:\n{proc.stderr[-3000:]}")
    return case, cams, paths


def detect_views(paths: list[pathlib.Path]):
    """MediaPipe on each render -> (list of ViewObservation or None where no face was found)."""
    from core.fit.api import PhotoInput
    from core.fit.pipeline import views_from_photos

    out = []
    for p in paths:
        try:
            views = views_from_photos([PhotoInput(name=p.stem, path=str(p))]).views
            out.append(views[0])
        except ValueError:
            out.append(None)
    return out


def _replace_per_view(views, cams, fields):
    """Copies of ``views`` (None stays None) with ``fields(view, cameras)`` replaced, where
    ``cameras`` is the view's true camera (batch-1 ``Cameras``) at the view's image size."""
    import dataclasses

    from core.geometry.camera import Cameras

    out = []
    for view, cam in zip(views, cams):
        if view is None:
            out.append(None)
            continue
        c = Cameras(cam.K, cam.R, cam.t, view.width, view.height)
        out.append(dataclasses.replace(view, **fields(view, c)))
    return out


def with_normal_maps(template, verts: np.ndarray, cams, views):
    """Copies of ``views`` carrying camera-space normal maps of the ground truth ``verts``
    rendered from each view's true camera (at the view's size): what a normal-map
    provider (core/priors, Pixel3DMM-style) would give at its best. The fitter still
    never sees the cameras; the maps are in each photo's own camera frame."""
    import torch

    from core.render import render_normals

    vt = torch.as_tensor(verts, dtype=torch.float64)[None]
    tris = torch.as_tensor(template.tris)

    def fields(view, cameras):
        normals, mask = render_normals(vt, tris, cameras)
        return {"normals": normals[0].numpy().astype(np.float32), "normal_mask": mask[0].numpy() > 0.5}

    return _replace_per_view(views, cams, fields)


def with_exact_landmarks(template, verts: np.ndarray, cams, views):
    """Copies of ``views`` whose landmarks are the ground truth's embedded landmark points
    projected through the true cameras (weights, normal maps and sizes unchanged)."""
    import torch

    from core.render import project_surface_points

    vt = torch.as_tensor(verts, dtype=torch.float64)[None]
    tris = torch.as_tensor(template.tris)
    lmk_tri = torch.as_tensor(template.lmk_tri)
    lmk_bary = torch.as_tensor(template.lmk_bary, dtype=torch.float64)

    def fields(view, cameras):
        uv, _ = project_surface_points(vt, tris, lmk_tri, lmk_bary, cameras)
        return {"landmarks": uv[0].numpy().astype(np.float32)}

    return _replace_per_view(views, cams, fields)


def detector_bias(template, verts: np.ndarray, cams, views) -> dict:
    """How far the detector's landmarks sit from the points they name, in 3-D: each surface
    landmark triangulated from every detected view with the true cameras, against the
    ground truth's embedded point (mm). More views do not remove this part of the error."""
    from core.geometry.embedding import triangulate
    from core.geometry.constants import MM
    from core.geometry.mesh_layout import surface_points
    from core.template import LMK_SURFACE

    use = [j for j, v in enumerate(views) if v is not None]
    if len(use) < 2:
        return {}
    kind = np.asarray(template.lmk_kind) == LMK_SURFACE
    pts = np.stack([views[j].landmarks for j in use])[:, kind]
    X = triangulate([cams[j] for j in use], pts).points
    gt = surface_points(verts.astype(np.float64), template.tris, template.lmk_tri[kind], template.lmk_bary[kind])
    d = np.linalg.norm(X - gt, axis=1) * MM
    return {"views": len(use), "rms_mm": float(np.sqrt((d ** 2).mean())), "median_mm": float(np.median(d)),
            "over_5mm": int((d > 5.0).sum()), "landmarks": int(kind.sum())}


def dense_correspondences(template, verts: np.ndarray, cams, rng, noise_px: float = 0.3, outlier_frac: float = 0.1,
                          outlier_px: float = 25.0):
    """Exact per-vertex correspondences (a perfect UV provider) of the vertices facing each camera,
    with pixel noise and gross outliers. verts: (N, 3); cams: batch-1 ``Cameras``.

    Returns (list of ViewCorrespondences, list of (N,) int8: -1 not seen, 0 good, 1 planted outlier).
    """
    from bridge.conventions import project_points_np
    from core.geometry.mesh_layout import vertex_normals
    from core.multiview import from_vertex_targets

    normals = vertex_normals(verts.astype(np.float64), template.tris)
    corrs, labels = [], []
    for cam in cams:
        K, R, t = cam.numpy()
        xc = verts @ R.T + t
        uv, _ = project_points_np(verts, K, R, t)
        facing = ((normals @ R.T) * xc).sum(1) < -0.2 * np.linalg.norm(xc, axis=1)
        uv = uv + rng.normal(0, noise_px, uv.shape)
        bad = facing & (rng.random(len(uv)) < outlier_frac)
        uv[bad] += rng.choice([-1, 1], (bad.sum(), 2)) * rng.uniform(outlier_px, 2 * outlier_px, (bad.sum(), 2))
        corrs.append(from_vertex_targets(cam.width, cam.height, uv, facing))
        labels.append(np.where(facing, bad.astype(np.int8), -1).astype(np.int8))
    return corrs, labels


def perturb_cameras(cams, rng, rot_deg: float = 2.0, trans_m: float = 0.005, focal: float = 0.03):
    """Batch-1 ``Cameras`` -> copies off by a random rotation, translation and focal scale (a PnP-quality start)."""
    import torch

    from core.geometry.camera import Cameras, axis_angle_to_matrix

    out = []
    for cam in cams:
        K, R, t = cam.numpy()
        dR = axis_angle_to_matrix(torch.as_tensor(np.radians(rot_deg) * rng.normal(size=3) / np.sqrt(3))).numpy()
        K[:2, :2] *= 1 + focal
        out.append(Cameras.from_numpy(K, dR @ R, t + rng.normal(0, trans_m, 3), cam.width, cam.height))
    return out


def dense_section(template, counts, variants, res) -> dict:
    """BA alone on exact dense correspondences (0.3 px noise, 10 % outliers) of a known smooth identity."""
    import torch

    from core.bench.metrics import mesh_metrics
    from core.bench.synthetic import FACE_REGION, camera_looking_at, smooth_field
    from core.multiview import colmap_then_largesteps, rotation_errors_deg, similarity_transform, topology_ba

    fns = {"topology_ba": topology_ba, "colmap_then_largesteps": colmap_then_largesteps}
    gt = (template.verts + smooth_field(template, np.random.default_rng(7), rms_m=0.003)).astype(np.float32)
    face = template.regions[FACE_REGION]
    centre = gt[face].mean(0)
    out = {}
    for variant in [v for v in variants if v in fns]:
        rows = {"views": [], "rmse_mm": [], "rot_err_deg": [], "ba_seconds": []}
        for k in [k for k in counts if k > 1]:
            cams = [camera_looking_at(centre, y, p, 0.7, 2.4 * res, res) for y, p in CAMERA_ORDER[:k]]
            rng = np.random.default_rng(1)
            corrs, _ = dense_correspondences(template, gt, cams, rng)
            r = fns[variant](template.verts, template.tris, corrs, perturb_cameras(cams, rng))
            _, R_align, _ = similarity_transform(r.verts[face].astype(np.float64), gt[face].astype(np.float64))
            est_R, true_R = (torch.cat([c.R for c in x]).numpy() for x in (r.cameras, cams))
            rot = rotation_errors_deg(est_R, true_R, R_align)
            rows["views"].append(k)
            rows["rmse_mm"].append(mesh_metrics(r.verts, gt, template.tris, face)["rmse_mm"])
            rows["rot_err_deg"].append(float(rot.mean()))
            rows["ba_seconds"].append(r.seconds)
            print(f"  dense {k:2d} views {variant:<24} rmse {rows['rmse_mm'][-1]:.3f} mm  rot {rot.mean():.3f} deg  "
                  f"ba {r.seconds:.2f} s", flush=True)
        out[variant] = rows
    out["start_rmse_mm"] = mesh_metrics(template.verts, gt, template.tris, face)["rmse_mm"]
    return out


def _fit(template, views, options, device):
    from core.fit.pipeline import fit_views

    result = None
    for rec in fit_views(template, views, options, device=device):
        result = rec.result or result
    return result


def _errors(template, result, case_verts, gt_cams, face_ids) -> tuple[float, float, float | None]:
    """(face RMSE mm, mean rotation error deg, BA mesh RMSE mm or None) after similarity alignment."""
    import torch

    from core.bench.metrics import mesh_metrics
    from core.multiview import rotation_errors_deg, similarity_transform

    verts = result.arrays["verts"]
    rmse = mesh_metrics(verts, case_verts, template.tris, face_ids)["rmse_mm"]
    _, R_align, _ = similarity_transform(verts[face_ids].astype(np.float64), case_verts[face_ids].astype(np.float64))
    rot = float(rotation_errors_deg(result.arrays["R"], torch.cat([c.R for c in gt_cams]).numpy(), R_align).mean())
    ba = None
    if "verts_ba" in result.arrays:
        ba = mesh_metrics(result.arrays["verts_ba"], case_verts, template.tris, face_ids)["rmse_mm"]
    return rmse, rot, ba


def _mean_or_none(values) -> float | None:
    """Mean of the non-None values (the BA mesh error exists only where a BA ran)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def run(args) -> dict:
    import torch

    from core.bench.synthetic import FACE_REGION
    from core.fit.options import FitOptions
    from core.template import load_default

    torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    counts = sorted({int(k) for k in args.views.split(",") if k})
    if not counts or counts[0] < 1 or counts[-1] > len(CAMERA_ORDER):
        raise SystemExit(f"--views must be between 1 and {len(CAMERA_ORDER)}")
    template = load_default()
    face_ids = template.regions[FACE_REGION]
    cache = cache_root(args.cache)
    cues = [c for c in args.cues.split(",") if c]
    if set(cues) - set(CUES) or not cues:
        raise SystemExit(f"--cues must name some of {CUES}")
    names = [f"{v}/{c}" for c in cues for v in variants]
    per = {n: {k: [] for k in counts} for n in names}
    print("bundle adjustment alone on exact dense correspondences:", flush=True)
    dense = dense_section(template, counts, variants, args.res)
    cases = []
    for i in range(args.cases):
        seed = args.seed + i
        t0 = time.perf_counter()
        case, cams, paths = render_identity(template, seed, args.res, args.samples, cache)
        render_s = time.perf_counter() - t0
        detected = detect_views(paths)
        cue_views = {"landmarks": detected, "normals": with_normal_maps(template, case.verts, cams, detected)}
        if "exact" in cues:
            cue_views["exact"] = with_exact_landmarks(template, case.verts, cams, cue_views["normals"])
        found = [j for j, v in enumerate(detected) if v is not None]
        bias = detector_bias(template, case.verts, cams, detected)
        entry = {"seed": seed, "render_seconds": round(render_s, 1), "detected": len(found), "runs": [],
                 "detector_bias": bias}
        print(f"identity {seed}: {len(found)}/{len(paths)} renders detected ({render_s:.0f} s render/cache)",
              flush=True)
        if bias:
            print(f"  detector bias: MediaPipe's surface landmarks triangulated from {bias['views']} views with the "
                  f"true cameras sit {bias['rms_mm']:.2f} mm RMS ({bias['median_mm']:.2f} median) from the points "
                  f"they name", flush=True)
        single = {}
        for k in counts:
            use = found[:k]
            if len(use) < k:
                print(f"  only {len(use)} views detected; skipping {k} views", flush=True)
                continue
            for cue, variant in [(c, v) for c in cues for v in variants]:
                views = cue_views[cue]
                name = f"{variant}/{cue}"
                if k == 1 and cue in single:
                    row = dict(single[cue], variant=name)
                else:
                    options = FitOptions(preset=args.preset, multiview_ba="off" if variant == "no_ba" else variant)
                    t1 = time.perf_counter()
                    result = _fit(template, [views[j] for j in use], options, args.device)
                    fit_s = time.perf_counter() - t1
                    rmse, rot, ba_rmse = _errors(template, result, case.verts, [cams[j] for j in use], face_ids)
                    mv = result.meta.get("multiview", {})
                    row = {"variant": name, "views": k, "rmse_mm": rmse, "rot_err_deg": rot,
                           "ba_seconds": float(mv.get("ba_seconds", 0.0)), "fit_seconds": fit_s,
                           "ba_rmse_mm": ba_rmse, "ba_rms_px": mv.get("ba_rms_px")}
                    if k == 1:
                        single[cue] = row
                entry["runs"].append(row)
                per[name][k].append(row)
                print(f"  {k:2d} views {name:<34} rmse {row['rmse_mm']:.3f} mm  rot {row['rot_err_deg']:.2f} deg  "
                      f"ba {row['ba_seconds']:.2f} s  fit {row['fit_seconds']:.1f} s", flush=True)
        cases.append(entry)
    out = {"variants": {}, "dense": dense, "cases": cases, "res": args.res, "samples": args.samples, "preset": args.preset,
           "threads": args.threads, "device": args.device, "cues": cues, "table": []}
    for variant in names:
        ks = [k for k in counts if per[variant][k]]
        mean = lambda key, k: float(np.mean([r[key] for r in per[variant][k]]))  # noqa: E731
        out["variants"][variant] = {
            "views": ks,
            "rmse_mm": [mean("rmse_mm", k) for k in ks],
            "rot_err_deg": [mean("rot_err_deg", k) for k in ks],
            "ba_seconds": [mean("ba_seconds", k) for k in ks],
            "fit_seconds": [mean("fit_seconds", k) for k in ks],
            "ba_rmse_mm": [_mean_or_none([r["ba_rmse_mm"] for r in per[variant][k]]) for k in ks],
        }
        for j, k in enumerate(ks):
            v = out["variants"][variant]
            out["table"].append({"variant": variant, "views": k, "rmse_mm": round(v["rmse_mm"][j], 3),
                                 "rot_err_deg": round(v["rot_err_deg"][j], 2), "ba_seconds": round(v["ba_seconds"][j], 2),
                                 "fit_seconds": round(v["fit_seconds"][j], 1)})
    return out
