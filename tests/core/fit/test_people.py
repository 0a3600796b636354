"""Many people in one optimisation (core/fit/people.py): each person follows their solo fit, a person whose
fit breaks leaves the batch with their error, and the large-steps solve takes several meshes at once."""

from __future__ import annotations

import copy
import pathlib
import io

import numpy as np
import pytest
import torch

from conftest import GRACE_HOPPER

# A short schedule with every stage and term of the one-photo fit. The fit amplifies float rounding (even
# these 16 steps carry a 1e-9 difference to 0.4 mm at single vertices; README, *Many people in one
# optimisation*), so a batched head is checked to be its solo fit bit for bit, in float32.
TINY = {"stages": {"rig": {"iterations": 8}, "joint": {"iterations": 4}, "vertex": {"iterations": 4}}}


def _photo_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as ``likeness batch`` workers run: with two, a reduction over a person's pixels
    splits across the threads alone but not in a batch, and the sums round differently."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def people():
    """Three people's one-photo views, read as a user's photos are (landmarks, the face prior's maps)."""
    from PIL import Image
    from skimage import data

    from core.fit.api import PhotoInput
    from core.fit.options import FitOptions
    from core.fit.pipeline import views_from_photos

    options = FitOptions.from_dict({"preset": "draft", "schedule": TINY})
    grace = np.asarray(Image.open(GRACE_HOPPER).convert("RGB"))
    photos = [grace, data.astronaut(), np.ascontiguousarray(grace[:, ::-1])]
    views = [views_from_photos([PhotoInput(f"p{i}.png", data=_photo_bytes(rgb))], options).views
             for i, rgb in enumerate(photos)]
    return views, options


def _solo(template, views, options):
    from core.fit.pipeline import fit_views

    result = None
    for record in fit_views(template, views, options):
        result = record.result or result
    return result


def _fitted(views_list, options, together: bool):
    """The posed fitted meshes (before the result's rig-ready touches), in a batch or one by one."""
    from core.fit.camera_init import initial_cameras
    from core.fit.loop import FitState, run_stages
    from core.fit.objective import Objective
    from core.fit.people import PeopleObjective, PeopleVariables, run_people_stages
    from core.fit.schedule import schedule_for
    from core.fit.variables import FitVariables
    from core.template import TemplateModel, load_default

    model = TemplateModel(load_default(), dtype=torch.float64 if options.float64 else torch.float32)
    stages = schedule_for(options, views_list[0])
    if together:
        variables = PeopleVariables(model, [initial_cameras(model, v)[0] for v in views_list])
        objective = PeopleObjective(model, [v[0] for v in views_list])
        run = run_people_stages(variables, objective, stages)
        assert run.errors == [None] * len(views_list)
        with torch.no_grad():
            return objective.posed(variables).verts.numpy(), run
    out = []
    for views in views_list:
        variables, objective = FitVariables(model, initial_cameras(model, views)), Objective(model, views)
        for _ in run_stages(FitState(variables, objective), stages):
            pass
        out.append(objective.current_verts(variables))
    return np.stack(out), None


def test_people_fitted_together_follow_their_solo_fits(people):
    views, options = people
    together, run = _fitted(views, options, True)
    solo, _ = _fitted(views, options, False)
    assert together.dtype == np.float32 and np.array_equal(together, solo)
    assert [r.iterations for r in run.reports[0]] == [8, 4, 4]
    # The people are different heads: a batch that mixed them up could not pass the check above.
    assert np.linalg.norm(solo[0] - solo[1], axis=-1).mean() > 1e-3


def test_fit_people_returns_each_persons_result_and_runs_several_photos_solo(people):
    from core.fit.people import batchable, fit_people
    from core.fit.schedule import schedule_for
    from core.template import load_default

    views, options = people
    both = views[0] + views[2]  # one person in two photos: not batched
    assert not batchable(both, schedule_for(options, both)) and batchable(views[1], schedule_for(options, views[1]))
    template = load_default()
    out = fit_people(template, [*views, both], options, batch_size=2)
    assert [r.meta["batch"]["people"] for r in out[:3]] == [2, 2, 1] and "batch" not in out[3].meta
    for r, v in zip(out, [*views, both]):
        assert r.arrays["verts"].shape == (template.num_verts, 3) and np.isfinite(r.arrays["verts"]).all()
        assert [x["name"] for x in r.meta["views"]] == [x.name for x in v]
        assert [st["name"] for st in r.meta["stages"]] == ["rig", "joint", "vertex"]
    assert out[3].arrays["K"].shape[0] == 2


def test_a_person_whose_fit_breaks_leaves_the_batch_and_the_others_finish(people):
    from core.fit.people import fit_people
    from core.template import load_default

    views, options = people
    # Observations clean what they are given (non-finite pixels weigh 0): this map turns NaN after that,
    # as a fault in a cue would, and every step of this person's fit is non-finite.
    broken = copy.copy(views[1][0])
    broken.normals = np.full_like(broken.normals, np.nan)
    out = fit_people(load_default(), [views[0], [broken], views[2]], options)
    assert isinstance(out[1], FloatingPointError) and "non-finite" in str(out[1])
    for r in (out[0], out[2]):
        assert not isinstance(r, Exception) and np.isfinite(r.arrays["verts"]).all()
    # The others' fits are theirs: the broken person's NaNs reached nobody else.
    with_broken, _ = _fitted([views[0], views[2]], options, True)
    alone, _ = _fitted([views[0], views[2]], options, False)
    assert np.array_equal(with_broken, alone)


def test_large_steps_solve_takes_several_meshes_bit_for_bit():
    from core.geometry.large_steps import LargeSteps
    from core.geometry.topology import MeshTopology
    from core.template import load_default
    from core.template.mesh_layout import padded_polygons

    t = load_default()
    tris = torch.as_tensor(t.tris)
    topology = MeshTopology.from_faces(tris, t.num_verts, torch.as_tensor(padded_polygons(t)))
    solver = LargeSteps(topology, 20.0, "cpu")
    u = torch.randn(45, t.num_verts, 3, generator=torch.Generator().manual_seed(0))  # 135 columns: two solves
    assert torch.equal(solver(u), torch.stack([solver(x) for x in u]))
    assert torch.equal(solver.to_differential(u), torch.stack([solver.to_differential(x) for x in u]))


def test_a_batch_task_fits_its_people_together_and_reports_each(tmp_path):
    """``likeness batch``'s task (core/batch/work.py) with three people: two fitted in one optimisation, one
    photo without a face a failed row; the results are complete result sets, and a rerun skips them."""
    import shutil

    from PIL import Image
    from skimage import data

    from core.batch.people import collect_people
    from core.batch.work import fit_people as task
    from core.fit.options import FitOptions
    from core.fit.result_set import read_result_set

    photos = tmp_path / "in"
    photos.mkdir()
    shutil.copy(GRACE_HOPPER, photos / "a.jpg")
    Image.fromarray(data.astronaut()).save(photos / "b.png")
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(photos / "c.png")
    options = {"preset": "draft", "schedule": TINY}
    people = collect_people([str(photos)], options)
    fit_options = FitOptions.from_dict({**options, "texture_size": 64})
    rows = task(people, str(tmp_path / "out"), fit_options, "cpu", 1)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert "face" in rows[2]["error"].lower()
    for row in rows[:2]:
        report = read_result_set(pathlib.Path(row["out"]))
        assert report["batch"]["people"] == 2 and "albedo.png" in report["files"]
    again = task(people, str(tmp_path / "out"), fit_options, "cpu", 1)
    assert [r["status"] for r in again] == ["skipped", "skipped", "failed"]


def test_a_person_stopped_by_the_plateau_test_resumes_at_the_next_level_as_a_solo_fit_does(people):
    """A rig stage of two normal-map levels whose plateau test fires early at the coarse one: the people
    wait (their Adam steps off, their step count held) and go on at the finer level, as a solo fit skips."""
    from core.fit.options import FitOptions

    views, options = people
    rig = {"iterations": 12, "plateau_patience": 2, "plateau_rel": 0.3, "normal_levels": 2}
    plateau = FitOptions.from_dict({"preset": "draft", "schedule": {"stages": {**TINY["stages"], "rig": rig}}})
    together, run = _fitted(views, plateau, True)
    solo, _ = _fitted(views, plateau, False)
    assert np.array_equal(together, solo)
    assert all(r[0].iterations < 12 for r in run.reports)  # the plateau test did fire
