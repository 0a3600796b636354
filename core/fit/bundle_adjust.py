"""The bundle-adjustment stage: cameras and vertices from the views' correspondences.

A ``StageSpec`` of kind ``"bundle_adjust"`` (``core/fit/schedule.py``) runs
here, called by the loop between the gradient stages (after the rig stage by
default). From the current mesh and cameras it:

1. drops surface landmarks that face away from their view's camera
   (``hide_backfacing``), for the adjustment and every later stage;
2. runs the solver (``core.multiview``) on the views' landmark
   correspondences: ``topology_ba`` (one objective with a Laplacian energy)
   or ``colmap_then_largesteps`` (COLMAP point BA, then a separate
   large-steps template fit);
3. starts the later stages from the adjusted cameras and, when the stage
   lists ``"offsets"``, from the adjustment's vertex corrections as per-vertex
   offsets (identity, expression, pose and joints carry over).

The solver knows nothing of the fit; this module translates between them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from core.geometry.camera import Cameras
from core.multiview import BAOptions, BAResult, colmap_then_largesteps, from_landmarks, topology_ba
from core.template import LMK_SURFACE, Template

from .objective import Objective
from .observations import ViewObservation
from .schedule import StageSpec, solver_options
from .variables import FitVariables

# What carries over from the variables before the adjustment to the ones after it.
CARRIED = ("shape", "expression", "pose", "joints")


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


def solve(method: str, template: Template, verts: np.ndarray, views: list[ViewObservation],
          cameras: list[Cameras], options: BAOptions, device: str = "cpu", control=None) -> BAResult:
    """Run one solver on the views' landmark correspondences. verts: (N, 3) float32 start mesh."""
    corrs = [from_landmarks(template, v.width, v.height, v.landmarks, v.landmark_weight, v.name) for v in views]
    if method == "topology_ba":
        return topology_ba(verts, template.tris, corrs, cameras, options, device=device, control=control)
    if method == "colmap_then_largesteps":
        return colmap_then_largesteps(verts, template.tris, corrs, cameras, options, device=device)
    raise ValueError(f"unknown bundle adjustment method {method!r}")


def run_bundle_adjust(spec: StageSpec, variables: FitVariables, objective: Objective,
                      control=None) -> tuple[FitVariables, Objective, BAResult]:
    """Run a bundle-adjustment stage from the current fit; returns the variables and the
    objective the later stages start from, and the solver's result."""
    model = variables.model
    template = model.template
    if len(variables.sizes) < 2:
        raise ValueError("a bundle adjustment needs at least two views")
    options = solver_options(spec.solver)
    options = dataclasses.replace(options, shared_focal=variables.shared_focal,
                                  refine_focal=options.refine_focal and "focal" in spec.variables)
    with torch.no_grad():
        start_verts = objective.current_verts(variables)
    start_cams = current_cameras(variables)
    if spec.hide_backfacing:
        views = hide_backfacing(template, start_verts, start_cams, objective.views, spec.min_cos)
        objective = Objective(model, views)
    ba = solve(spec.method, template, start_verts, objective.views, start_cams, options, str(model.device), control)
    adjusted = FitVariables(model, ba.cameras, shared_focal=variables.shared_focal)
    with torch.no_grad():
        for name in CARRIED:
            getattr(adjusted, name).copy_(getattr(variables, name))
        if "offsets" in spec.variables:
            adjusted.offsets.copy_(torch.as_tensor(ba.verts - start_verts, device=model.device, dtype=model.dtype))
    return adjusted, objective, ba
