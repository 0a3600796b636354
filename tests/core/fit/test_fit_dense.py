"""The dense term: a cue provider's template-UV map becomes one pixel target per face vertex."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.geometry.camera import Cameras
from core.render import interpolate, rasterize

SIZE = 256
FOCAL = 700.0


@pytest.fixture(scope="module")
def template():
    from core.template import load_default

    return load_default()


def _view(template, shift_px: float = 0.0):
    """A front view of the default head with exact landmarks and its UV map (rendered
    ``shift_px`` pixels to the right of where the landmarks say the head is)."""
    from core.fit.observations import ViewObservation
    from core.geometry.mesh_layout import surface_points
    from core.template.mesh_layout import vertex_uvs

    v = template.verts.astype(np.float64)
    centre = v[template.regions["face_mask"]].mean(0)
    cam = Cameras.look_at(centre + np.array([0.0, -0.6, 0.0]), centre, FOCAL, SIZE, SIZE)
    lmk, _ = cam.project(torch.as_tensor(surface_points(v, template.tris, template.lmk_tri, template.lmk_bary))[None])
    K = cam.K.clone()
    K[0, 0, 2] += shift_px
    shifted = Cameras(K, cam.R, cam.t, SIZE, SIZE)
    verts = torch.as_tensor(v)[None]
    tris = torch.as_tensor(template.tris, dtype=torch.int64)
    frags = rasterize(verts, tris, shifted)
    uv = interpolate(torch.as_tensor(vertex_uvs(template), dtype=torch.float64)[None], tris, frags)[0].numpy()
    mask = frags.mask[0].numpy().astype(np.float32)
    return ViewObservation(SIZE, SIZE, lmk[0].numpy().astype(np.float32), np.ones(len(template.lmk_tri), np.float32),
                           uv_map=uv, uv_weight=mask, focal_px=FOCAL)


def _dense(template, view) -> float:
    from core.fit.objective import Objective
    from core.fit.pipeline import initial_cameras
    from core.fit.variables import FitVariables
    from core.template import TemplateModel

    model = TemplateModel(template)
    objective = Objective(model, [view])
    targets, weights = objective.dense
    assert float((weights > 0).to(torch.float32).sum()) > 0.3 * len(template.regions["face_mask"])
    assert torch.all(weights[:, np.setdiff1d(np.arange(template.num_verts), template.regions["face_mask"])] == 0)
    variables = FitVariables(model, initial_cameras(model, [view]))
    terms = objective.terms(variables, {"dense": 1.0})
    assert "dense" not in objective.terms(variables, {"landmark": 1.0})
    return float(terms["dense"].detach())


def test_dense_term_is_small_on_the_true_head_and_grows_off_it(template):
    exact = _dense(template, _view(template))
    off = _dense(template, _view(template, shift_px=4.0))
    # 4 px on an eye distance of ~100 px: Huber 0.5 (0.04)^2 ~ 8e-4; exact targets are sub-pixel.
    assert exact < 1e-4
    assert off > 5 * exact and off > 2e-4


def test_views_without_uv_maps_have_no_dense_term(template):
    from core.fit.objective import Objective
    from core.template import TemplateModel

    view = _view(template)
    view.uv_map = view.uv_weight = None
    assert Objective(TemplateModel(template), [view]).dense is None


def test_uv_maps_are_checked(template):
    from core.fit.observations import ViewObservation

    with pytest.raises(ValueError, match="UV map must be"):
        ViewObservation(8, 8, np.zeros((478, 2)), np.ones(478), uv_map=np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="do not match"):
        ViewObservation(8, 8, np.zeros((478, 2)), np.ones(478), uv_map=np.zeros((8, 8, 2)), uv_weight=np.ones((4, 4)))
