"""The shading term: the photo's skin mask, and a loss that is lowest on the true surface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.geometry.camera import Cameras
from core.render import render_normals
from core.texture.lighting import sh_basis

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def template():
    from core.template import load_default

    return load_default()


@pytest.fixture(scope="module")
def astronaut_face():
    import skimage.data

    from core.priors.landmarks import detect_landmarks

    rgb = skimage.data.astronaut()
    return rgb, detect_landmarks(rgb).points


def test_skin_mask_keeps_cheeks_and_drops_eyes_and_lips(astronaut_face):
    from core.priors.skin import skin_mask

    rgb, pts = astronaut_face
    h, w = rgb.shape[:2]
    mask = skin_mask(pts, w, h)
    assert mask.shape == (h, w) and mask.dtype == bool

    def at(i):
        x, y = np.floor(pts[i]).astype(int)
        return bool(mask[y, x])

    # Cheeks (MediaPipe 50, 280) and the forehead's centre (151) are skin.
    assert at(50) and at(280) and at(151)
    # Eye corners, pupils and the mouth's corners and centre are not.
    assert not any(at(i) for i in (33, 133, 362, 263, 468, 473, 61, 291, 13, 14))
    # The mask lies inside the face: its area is a fraction of the oval's bounding box.
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    assert 0.3 < mask.sum() / ((x1 - x0) * (y1 - y0)) < 0.8


def test_skin_mask_rejects_wrong_shapes():
    from core.priors.skin import skin_mask

    with pytest.raises(ValueError, match="478"):
        skin_mask(np.zeros((68, 2)), 100, 100)


def test_shading_image_is_linear_and_scaled(astronaut_face):
    from core.fit.pipeline import shading_image

    rgb, pts = astronaut_face
    image, skin, scale = shading_image(rgb, pts, max_res=128)
    assert scale == pytest.approx(1 / 4)
    assert image.shape == (128, 128, 3) and skin.shape == (128, 128)
    # Linear light: mid-grey sRGB 0.5 maps to about 0.21.
    grey = rgb.astype(np.float64).mean() / 255.0
    assert image.mean() < grey


def _scene(template, device, dtype=torch.float64):
    """The template's face seen from the front, 96 x 96 pixels."""
    v = torch.as_tensor(template.verts, dtype=dtype, device=device)[None]
    face = v[0, template.regions["face_mask"]]
    centre = face.mean(0)
    R = torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], dtype=dtype, device=device)  # camera looks along +y
    t = -(R @ (centre + torch.tensor([0, -0.6, 0], dtype=dtype, device=device)))
    f = 96 * 0.6 / 0.2
    K = torch.tensor([[f, 0, 48], [0, f, 48], [0, 0, 1]], dtype=dtype, device=device)
    return v, Cameras(K[None], R[None], t[None], 96, 96)


@pytest.mark.parametrize("device", DEVICES)
def test_shading_loss_is_lowest_on_the_true_shape(template, device):
    from core.fit.shading import shading_loss, view_light
    from core.template import TemplateModel

    tris = TemplateModel(template, device=device, dtype=torch.float64).tris
    v, cam = _scene(template, device)
    n, cover = render_normals(v, tris, cam)
    light = torch.tensor([1.0, 0.3, -0.4, 0.2, 0.05, 0.0, -0.1, 0.05, 0.0], dtype=v.dtype, device=device)
    image = (sh_basis(n[0]) @ light).clamp_min(0) * cover[0]
    weight = cover[0]
    # Push the face out along the view axis by a smooth bump: the normals change.
    face = v[0, template.regions["face_mask"]]
    d = (v[0] - face.mean(0)).norm(dim=-1)
    bump = torch.zeros_like(v)
    bump[0, :, 1] = -0.01 * torch.exp(-(d / 0.03) ** 2)
    losses = []
    for a in (0.0, 0.5, 1.0):
        na, ca = render_normals(v + a * bump, tris, cam)
        losses.append(float(shading_loss(na[0], image, weight * ca[0])))
    assert losses[0] < 0.01  # the ridge on the light's bands leaves a small residual
    assert losses[0] < losses[1] < losses[2]
    # The light fitted to the true shape explains the image (the light itself is not
    # identifiable from one side: bands 0 and 2 mix on a hemisphere).
    fitted = sh_basis(n[0]) @ view_light(n[0], image, weight)
    assert float(((fitted - image).abs() * weight).sum() / (image * weight).sum()) < 0.05
    # Held light: the same ordering, and a gradient that reaches the vertices.
    moved = (v + bump).clone().requires_grad_(True)
    nm, cm = render_normals(moved, tris, cam)
    loss = shading_loss(nm[0], image, weight * cm[0], light=light)
    loss.backward()
    assert float(loss.detach()) > 10 * float(shading_loss(n[0], image, weight, light=light))
    assert torch.isfinite(moved.grad).all() and float(moved.grad.abs().sum()) > 0


def test_objective_evaluates_shading_only_when_weighted(template, astronaut_face):
    from core.fit.objective import Objective
    from core.fit.pipeline import initial_cameras, shading_image
    from core.fit.observations import ViewObservation
    from core.fit.schedule import make_schedule
    from core.fit.variables import FitVariables
    from core.template import TemplateModel

    rgb, pts = astronaut_face
    image, skin, scale = shading_image(rgb, pts)
    view = ViewObservation(rgb.shape[1], rgb.shape[0], pts, np.ones(len(pts), np.float32), image=image, skin=skin,
                           image_scale=scale)
    model = TemplateModel(template)
    variables = FitVariables(model, initial_cameras(model, [view]))
    objective = Objective(model, [view])
    spec = make_schedule("draft", {"stages": {"rig": {"weights": {"shading": 1.0}}}})[0]
    objective.begin_stage(spec, variables)
    assert objective.lights[0] is not None
    terms = objective.terms(variables, spec.weights)
    assert "shading" in terms and 0 < float(terms["shading"].detach()) < 1
    assert "shading" not in objective.terms(variables, {"landmark": 1.0})
    # Two photos: the consistency term sees the face in both.
    pair = Objective(model, [view, view])
    variables = FitVariables(model, initial_cameras(model, [view, view]))
    spec = make_schedule("draft", {"stages": {"rig": {"weights": {"consistency": 1.0}}}})[0]
    pair.begin_stage(spec, variables)
    both = (pair.sample_weights > 0).all(0)
    assert float(both.to(torch.float32).mean()) > 0.3
    value = pair.terms(variables, spec.weights)["consistency"].detach()
    assert torch.isfinite(value) and float(value) < 1e-6  # the same photo twice agrees with itself


def _textured_views(template, tris, device, yaws=(-20.0, 20.0)):
    """The template with a smooth random colour per vertex, seen from two sides: images (V, h, w, 3) and cameras."""
    from core.render import interpolate, rasterize

    v, front = _scene(template, device)
    g = torch.Generator().manual_seed(3)
    colours = torch.rand(1, v.shape[1], 3, generator=g, dtype=v.dtype).to(device) * 0.6 + 0.2
    centre = v[0, template.regions["face_mask"]].mean(0)
    images, cams = [], []
    for yaw in yaws:
        a = np.deg2rad(yaw)
        turn = torch.tensor([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], dtype=v.dtype,
                            device=device)
        R = front.R[0] @ turn
        t = front.t[0] + front.R[0] @ centre - R @ centre  # turn about the face's centre
        cam = Cameras(front.K, R[None], t[None], front.width, front.height)
        images.append(interpolate(colours, tris, rasterize(v, tris, cam))[0])
        cams.append(cam)
    return v, images, cams


@pytest.mark.parametrize("device", DEVICES)
def test_consistency_loss_is_lowest_on_the_true_shape(template, device):
    from core.fit.consistency import consistency_loss, face_samples, facing_weights, sample_image
    from core.render import rasterize, visible_points
    from core.template import TemplateModel

    tris = TemplateModel(template, device=device, dtype=torch.float64).tris
    v, images, cams = _textured_views(template, tris, device)
    tri_ids, bary = face_samples(tris.cpu().numpy(), template.regions["face_mask"])
    tri_ids = torch.as_tensor(tri_ids, device=device)
    bary = torch.as_tensor(bary, device=device, dtype=v.dtype)

    def points(verts):
        return (verts[0][tris[tri_ids]] * bary[..., None]).sum(1)

    pts = points(v)
    from core.geometry.normals import vertex_normals

    n = (vertex_normals(v, tris)[0][tris[tri_ids]] * bary[..., None]).sum(1)
    centres = torch.stack([-(c.R[0].T @ c.t[0]) for c in cams])
    weights = facing_weights(pts, n / n.norm(dim=-1, keepdim=True), centres)
    for i, c in enumerate(cams):
        weights[i] *= visible_points(pts[None], c, rasterize(v, tris, c))[0].to(v.dtype)
    assert float((weights > 0).all(0).to(v.dtype).mean()) > 0.3  # both views share much of the face

    face = v[0, template.regions["face_mask"]]
    d = (v[0] - face.mean(0)).norm(dim=-1)
    bump = torch.zeros_like(v)
    bump[0, :, 1] = -0.006 * torch.exp(-(d / 0.03) ** 2)  # toward the cameras

    def loss(verts):
        p = points(verts)
        colours = torch.stack([sample_image(img, c.project(p[None])[0][0]) for img, c in zip(images, cams)])
        return consistency_loss(colours, weights)

    values = [float(loss(v + a * bump)) for a in (0.0, 0.5, 1.0)]
    assert values[0] < values[1] < values[2]
    moved = (v + bump).clone().requires_grad_(True)
    loss(moved).backward()
    assert torch.isfinite(moved.grad).all() and float(moved.grad.abs().sum()) > 0
