"""The fitter on the default template: short real fits on synthetic ground truth."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from core.bench.fit import mesh_metrics, schedule_overrides
from core.bench.synthetic import FACE_REGION, make_case
from core.fit.control import FitCancelled, FitControl, Pins
from core.fit.pipeline import fit_views
from core.fit.schedule import make_schedule

SHORT = {"preset": "draft", "schedule": {"stages": {"rig": {"iterations": 40}, "joint": {"iterations": 15},
                                                      "vertex": {"iterations": 20}}}}


@pytest.fixture(scope="module")
def template():
    from core.template import load_default

    t = load_default()
    assert t.num_landmarks == 478, "the default template must carry the landmark embedding"
    return t


@pytest.fixture(scope="module")
def case(template):
    return make_case(template, seed=3, res=128)


def run(template, views, options, control=None):
    records, result = [], None
    for rec in fit_views(template, views, options, control):
        if rec.result is not None:
            result = rec.result
        else:
            records.append(rec)
    return records, result


def test_fit_improves_on_neutral(template, case):
    torch.manual_seed(0)
    records, result = run(template, [case.view], SHORT)
    stages = [r.stage for r in records]
    assert stages[0] == "rig" and stages[-1] == "vertex"
    assert [r.step for r in records] == sorted(r.step for r in records)
    assert all(np.isfinite(r.verts).all() and r.verts.shape == (template.num_verts, 3) for r in records)
    face = template.regions[FACE_REGION]
    before = mesh_metrics(template.verts, case.verts, template.tris, face)
    after = mesh_metrics(result.arrays["verts"], case.verts, template.tris, face)
    assert after["rmse_mm"] < 0.8 * before["rmse_mm"], (before["rmse_mm"], after["rmse_mm"])
    assert after["flipped_faces"] == 0
    assert result.meta["landmark_error_iod"] < 0.02
    assert {s["name"] for s in result.meta["stages"]} == {"rig", "joint", "vertex"}
    # Rig-ready pieces are present and consistent.
    a = result.arrays
    assert a["verts_neutral"].shape == a["verts"].shape
    assert a["joint_rest"].shape == (template.num_joints, 4, 4)
    rot = a["joint_rest"][:, :3, :3]
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-4)
    assert a["expression_deltas"].shape == (int(template.ctrl_is_expression.sum()), template.num_verts, 3)


def test_pins_pull_vertices(template, case):
    control = FitControl()
    vid = int(template.regions[FACE_REGION][0])
    target = template.verts[vid] + np.array([0.0, -0.01, 0.0], np.float32)
    control.set_pins(Pins(np.array([vid]), target[None], weight=10.0))
    opts = {"preset": "draft", "schedule": {"only": ["vertex"], "stages": {"vertex": {"iterations": 30}}}}
    _, result = run(template, [case.view], opts, control)
    moved = np.linalg.norm(result.arrays["verts"][vid] - target)
    _, free = run(template, [case.view], opts)
    assert moved < 0.5 * np.linalg.norm(free.arrays["verts"][vid] - target)


def test_cancel_and_pause(template, case):
    control = FitControl()
    seen = []
    with pytest.raises(FitCancelled):
        for rec in fit_views(template, [case.view], SHORT, control):
            seen.append(rec.step)
            if rec.step == 3:
                control.pause()
                threading.Timer(0.3, control.resume).start()
            if rec.step == 5:
                control.cancel()
    assert seen[-1] == 5


def test_divergence_rolls_back(template, case):
    opts = {"preset": "draft", "schedule": {"only": ["vertex"], "stages": {"vertex": {
        "iterations": 12, "lr": {"offsets": 1.0}, "plateau_patience": 100}}}}
    records, result = run(template, [case.view], opts)
    assert result.meta["stages"][0]["rollbacks"] > 0
    assert np.isfinite(result.arrays["verts"]).all()


def test_schedule_validation():
    with pytest.raises(ValueError, match="unknown preset"):
        make_schedule("fastest")
    with pytest.raises(ValueError, match="unknown setting"):
        make_schedule("draft", {"stages": {"rig": {"iterationz": 3}}})
    with pytest.raises(ValueError, match="unknown stages"):
        make_schedule("draft", {"stages": {"bones": {}}})
    assert [s.name for s in make_schedule("draft", schedule_overrides("rig_joint", "draft"))] == ["rig", "joint"]
    vo = make_schedule("draft", schedule_overrides("vertex_only", "draft"))
    assert len(vo) == 1 and "camera" in vo[0].variables
