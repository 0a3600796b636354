"""The outline term: the head's silhouette as a signed distance field, and a loss that
pulls the mesh's occluding contour onto it."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _disc(h=120, w=100, r=30.0, centre=(50.0, 60.0)):
    yy, xx = np.mgrid[:h, :w] + 0.5
    return (np.hypot(xx - centre[0], yy - centre[1]) <= r).astype(np.float32)


def test_outline_field_is_the_signed_distance_to_the_outer_boundary():
    from core.priors.outline import outline_field

    head = _disc()
    head[55:65, 40:48] = 0.0  # an eye: a hole, not an outline
    head[5:10, 5:10] = 1.0  # a speck apart from the head
    sdf, weight = outline_field(head)
    assert sdf.shape == head.shape and weight.shape == head.shape
    # Inside negative, outside positive, about the distance to the circle.
    assert sdf[60, 50] < -25 and sdf[60, 95] > 10
    assert sdf[60, 50 + 20] == pytest.approx(-10, abs=1.5)
    assert sdf[60, 50 + 40] == pytest.approx(10, abs=1.5)
    # The hole was filled: next to the eye the field still measures to the outline.
    assert sdf[60, 44] < -15 and weight[60, 44] == 0  # beyond reach (20 px) of the outline
    assert weight[60, 50 + 25] == 1 and weight[60, 50 + 35] == 1
    # The speck is not the head: no boundary there.
    assert sdf[7, 7] > 15


def test_outline_field_leaves_out_edges_of_the_covered_region():
    from core.priors.outline import outline_field

    head = _disc()
    covered = np.zeros(head.shape, bool)
    covered[:, :60] = True  # the mask was predicted on the left only
    sdf, weight = outline_field(head, covered)
    # Left side of the circle: trusted; right side (where nothing was predicted): no weight.
    assert weight[60, 50 - 30] == 1
    assert weight[60, 50 + 30] == 0 and weight[60, 58] == 0
    # Nothing predicted at all, or an empty mask: no outline.
    assert not outline_field(head, np.zeros(head.shape, bool))[1].any()
    assert not outline_field(np.zeros_like(head))[1].any()


@pytest.fixture(scope="module")
def scene():
    import skimage.data

    from core.fit.observations import ViewObservation
    from core.fit.pipeline import initial_cameras
    from core.priors.landmarks import detect_landmarks
    from core.template import TemplateModel, load_default

    template = load_default()
    rgb = skimage.data.astronaut()
    pts = detect_landmarks(rgb).points
    view = ViewObservation(rgb.shape[1], rgb.shape[0], pts, np.ones(len(pts), np.float32))
    model = TemplateModel(template)
    return model, view, initial_cameras(model, [view])


def _with_outline(view, verts, model, camera):
    """``view`` with the outline of ``verts`` (1, N, 3) as the camera sees them."""
    import dataclasses

    from core.priors.outline import outline_field
    from core.render import rasterize

    head = (rasterize(verts, model.tris, camera).face_id[0] >= 0).numpy().astype(np.float32)
    sdf, weight = outline_field(head)
    return dataclasses.replace(view, outline=sdf, outline_weight=weight)


def test_outline_term_is_lowest_on_the_heads_own_silhouette(scene):
    from core.fit.objective import Objective
    from core.fit.schedule import make_schedule
    from core.fit.variables import FitVariables

    model, view, cameras = scene
    spec = make_schedule("draft", {"stages": {"rig": {"weights": {"outline": 1.0}}}})[0]
    variables = FitVariables(model, cameras)
    with torch.no_grad():
        verts = model.deform(variables.controllers(), variables.joint_params(), parts=False).verts
    camera = Objective(model, [view]).cameras(variables)
    centre = verts[0, model.template.regions["face_mask"]].mean(0)
    losses = {}
    for scale in (1.0, 1.04):
        wider = centre + (verts - centre) * torch.tensor([scale, 1.0, scale], dtype=verts.dtype)
        objective = Objective(model, [_with_outline(view, wider, model, camera)])
        objective.begin_stage(spec, variables)
        assert objective.outline_select is not None and float(objective.outline_select[1].sum()) > 50
        variables.train_only(("offsets",))
        loss = objective.terms(variables, spec.weights)["outline"]
        losses[scale] = float(loss.detach())
        if scale != 1.0:
            loss.backward()
            grad = variables.offsets.grad
            moved = grad.abs().sum(-1) > 0
            # Only contour vertices feel it, and they are pushed outward (x away from the centre).
            assert 50 < int(moved.sum()) < model.num_verts // 4
            side = torch.sign(verts[0, moved, 0] - centre[0])
            assert float((-grad[moved, 0] * side > 0).to(torch.float32).mean()) > 0.8
        assert "outline" not in objective.terms(variables, {"landmark": 1.0})
    assert losses[1.04] > 5 * losses[1.0]


def test_the_head_mask_stopping_at_hair_is_not_an_outline():
    from core.priors.outline import outline_field

    head = _disc()
    person = _disc(r=30.0)
    person[:60] = 1.0  # hair (or a hat) above the middle: the person goes on past the head there
    sdf, weight = outline_field(head, None, person)
    assert weight[60 + 25, 50] == 1  # the chin meets the background
    assert weight[60 - 25, 50] == 0  # the crown meets hair


def test_person_mask_finds_the_astronaut():
    import skimage.data

    from core.priors.outline import person_mask

    rgb = skimage.data.astronaut()
    mask = person_mask(rgb)
    assert mask.shape == rgb.shape[:2] and mask.dtype == np.float32
    assert mask[140, 230] > 0.5  # her face
    assert mask[100, 100] < 0.5 and mask[100, 420] < 0.5  # the flag and the backdrop beside her


def test_a_large_photos_outline_is_kept_small_and_measured_in_photo_pixels():
    from core.priors.outline import outline_field, photo_outline

    head = _disc(h=1200, w=1000, r=300.0, centre=(500.0, 600.0))
    sdf, weight, scale = photo_outline(head, None, None, max_res=600)
    assert scale == pytest.approx(0.5) and sdf.shape == (600, 500)
    full, _ = outline_field(head)
    # The same distances, in the photo's pixels (within the coarse grid's pixel).
    assert sdf[300, 250 + 100] == pytest.approx(full[600, 500 + 200], abs=2.0)
    assert sdf[300, 250 + 160] == pytest.approx(full[600, 500 + 320], abs=2.0)


def test_a_large_photos_person_mask_is_read_at_the_fields_size():
    import skimage.data

    from core.priors.outline import photo_outline

    rgb = np.repeat(np.repeat(skimage.data.astronaut(), 2, axis=0), 2, axis=1)  # 1024 x 1024
    head = _disc(h=1024, w=1024, r=150.0, centre=(460.0, 280.0))
    sdf, weight, scale = photo_outline(head, None, rgb, max_res=512)
    assert scale == pytest.approx(0.5) and sdf.shape == weight.shape == (512, 512)
    assert sdf[140, 230] < 0  # inside the head disc, in the field's pixels
