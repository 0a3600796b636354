"""Several photos → one identity: rig stage, bundle adjustment, joint refinement.

``fit_multiview`` is what ``core.fit.pipeline.fit_views`` runs when it gets
more than one view and no cameras (the solvers live in ``core.multiview``,
which knows nothing of the fit):

1. per-view PnP of the neutral template, then the schedule's rig stage on all
   views together (one identity, one expression, per-view cameras);
2. a bundle adjustment of the per-view cameras and the template's vertices
   from the views' correspondences (landmark embeddings by default), started
   from the rig-stage mesh and cameras: ``topology_ba`` (one objective with a
   Laplacian energy, the default) or ``colmap_then_largesteps`` (COLMAP point
   BA, then a separate large-steps template fit);
3. the rest of the schedule (joint, vertex stages) on all views, from the
   rig-stage variables with the adjusted cameras and the BA's vertex
   corrections as initial per-vertex offsets.

Options (in the fit's options dict): ``"multiview_ba"``: ``"topology_ba"``
| ``"colmap_then_largesteps"`` | ``"off"`` (plain joint fit from PnP);
``"multiview_ba_options"``: overrides of ``BAOptions`` fields;
``"multiview_init_offsets"``: bool (default True);
``"multiview_hide_backfacing"``: bool (default True): after the rig stage,
surface landmarks facing away from their view's camera get weight 0 for the
BA and the later stages (see ``hide_backfacing``; ``"multiview_min_cos"``,
default 0.1, is the smallest cosine between normal and view direction kept); ``"multiview_shared_focal"``:
bool, default True: the views share one focal length relative to image size
(photos from one camera): every stage and the BA optimise one focal for all
views, started from the median of the per-view PnP focals. Set it to False
for photos from different cameras. Left per view, focals drift apart
(measured on 16 renders with one lens, landmarks + normal maps: 0.8-1.7×
the true focal).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import numpy as np
import torch

from core.geometry.camera import Cameras
from core.multiview import BAOptions, BAResult, colmap_then_largesteps, from_landmarks, topology_ba
from core.template import LMK_SURFACE, Template, TemplateModel

from .api import FitRecord
from .camera_init import initial_cameras
from .control import FitControl
from .loop import StageReport, run_meta, run_stages
from .objective import Objective
from .observations import ViewObservation
from .result import assemble_result
from .schedule import schedule_for
from .variables import FitVariables

BA_METHODS = ("topology_ba", "colmap_then_largesteps")
RIG_STAGE = "rig"


def ba_options(options: dict) -> BAOptions:
    overrides = dict(options.get("multiview_ba_options") or {})
    known = {f.name for f in dataclasses.fields(BAOptions)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"multiview_ba_options: unknown settings {sorted(unknown)}; known: {sorted(known)}")
    return BAOptions(**overrides)


def current_cameras(variables: FitVariables) -> list[Cameras]:
    """The variables' cameras, one batch-1 float64 ``Cameras`` a view."""
    K, R, t = (x.detach().cpu().double() for x in variables.cameras())
    return [Cameras(K[i:i + 1], R[i:i + 1], t[i:i + 1], w, h) for i, (w, h) in enumerate(variables.sizes)]


def hide_backfacing(template: Template, verts: np.ndarray, cameras: list[Cameras],
                    views: list[ViewObservation], min_cos: float = 0.1) -> list[ViewObservation]:
    """Copies of ``views`` with zero weight on surface landmarks that face away from their camera.

    A detector still reports points on the far side of a turned head (guesses);
    across several views they contradict the views that see them. verts: (N, 3)
    float32 current mesh; a landmark counts as seen when the cosine between its
    surface normal and the direction to the camera exceeds ``min_cos``.
    """
    v = verts.astype(np.float64)
    tris = template.tris
    fn = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    vn = np.zeros_like(v)
    np.add.at(vn, tris.ravel(), np.repeat(fn, 3, axis=0))
    lt = tris[template.lmk_tri]  # (L, 3)
    bary = template.lmk_bary[..., None].astype(np.float64)
    n = (vn[lt] * bary).sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    p = (v[lt] * bary).sum(1)
    surface = np.asarray(template.lmk_kind) == LMK_SURFACE
    out = []
    for view, cam in zip(views, cameras):
        _, R, t = cam.numpy()
        to_cam = -R.T @ t - p
        cos = (n * to_cam).sum(1) / np.maximum(np.linalg.norm(to_cam, axis=1), 1e-12)
        weight = np.where(surface & (cos < min_cos), 0.0, view.landmark_weight).astype(np.float32)
        out.append(dataclasses.replace(view, landmark_weight=weight))
    return out


def bundle_adjust(method: str, template: Template, verts: np.ndarray, views: list[ViewObservation],
                  cameras: list[Cameras], options: BAOptions, device: str = "cpu", control=None) -> BAResult:
    """Run one BA method on the views' landmark correspondences. verts: (N, 3) float32 start mesh."""
    corrs = [from_landmarks(template, v.width, v.height, v.landmarks, v.landmark_weight, v.name) for v in views]
    if method == "topology_ba":
        return topology_ba(verts, template.tris, corrs, cameras, options, device=device, control=control)
    if method == "colmap_then_largesteps":
        return colmap_then_largesteps(verts, template.tris, corrs, cameras, options, device=device)
    raise ValueError(f"unknown multiview_ba {method!r}; choose one of {BA_METHODS} or 'off'")


def fit_multiview(template: Template, views: list[ViewObservation], options: dict | None = None,
                  control: FitControl | None = None, device: str = "cpu") -> Iterator[FitRecord]:
    """Fit one identity to several views; yields records, the last with the result (meta["multiview"])."""
    options = dict(options or {})
    method = options.get("multiview_ba", "topology_ba")
    if len(views) < 2:
        raise ValueError("multi-view fitting needs at least two views")
    bo = ba_options(options)
    if method not in BA_METHODS:
        raise ValueError(f"unknown multiview_ba {method!r}; choose one of {BA_METHODS} or 'off'")
    start = time.perf_counter()
    stages = schedule_for(options, views)
    dtype = torch.float64 if options.get("float64") else torch.float32
    model = TemplateModel(template, device=device, dtype=dtype)
    shared_focal = bool(options.get("multiview_shared_focal", True))
    bo = dataclasses.replace(bo, shared_focal=shared_focal)
    if all(v.focal_px is not None for v in views):
        bo = dataclasses.replace(bo, refine_focal=False)  # known focal lengths are held, as in the stages
    variables = FitVariables(model, initial_cameras(model, views), shared_focal=shared_focal)
    objective = Objective(model, views)
    reports: list[StageReport] = []
    total = sum(s.iterations for s in stages) + 1
    step, last = 0, None
    rig = [s for s in stages if s.name == RIG_STAGE]
    rest = [s for s in stages if s.name != RIG_STAGE]
    for rec in run_stages(variables, objective, rig, control, reports):
        step, last = rec.step, rec
        yield rec.renumbered(rec.step, total)
    with torch.no_grad():
        rig_verts = objective.current_verts(variables)
    rig_cams = current_cameras(variables)
    if options.get("multiview_hide_backfacing", True):
        views = hide_backfacing(template, rig_verts, rig_cams, views, float(options.get("multiview_min_cos", 0.1)))
        objective = Objective(model, views)
    ba = bundle_adjust(method, template, rig_verts, views, rig_cams, bo, device, control)
    step += 1
    ba_losses = {"reprojection_rms_px": float(np.nanmean(ba.rms_px)), "seconds": ba.seconds}
    yield FitRecord("bundle_adjust", 1, step, total, ba_losses, ba.verts)

    refined = FitVariables(model, ba.cameras, shared_focal=shared_focal)
    with torch.no_grad():
        for name in ("shape", "expression", "pose", "joints"):
            getattr(refined, name).copy_(getattr(variables, name))
        if options.get("multiview_init_offsets", True):
            refined.offsets.copy_(torch.as_tensor(ba.verts - rig_verts, device=model.device, dtype=dtype))
    for rec in run_stages(refined, objective, rest, control, reports):
        last = rec
        yield rec.renumbered(step + rec.step, total)
    result = assemble_result(refined, objective, views)
    result.meta.update(run_meta(reports, stages, start, model.device))
    result.meta.update({
        "multiview": {
            "ba": method,
            "ba_seconds": round(ba.seconds, 3),
            "ba_rms_px": ba.rms_px,
            "ba_inlier_fraction": [float(m.mean()) if m.size else 0.0 for m in ba.inliers],
        },
    })
    result.arrays["verts_ba"] = ba.verts
    yield FitRecord("done", 0, total, total, reports[-1].losses if reports else {}, result.arrays["verts"], result=result)
