"""Multi-view: topology-aware bundle adjustment, outlier rejection, the COLMAP baseline, joint fit.

Synthetic observations come from core/render (exact projections of a known
identity through known cameras), never from Cycles.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.bench.metrics import mesh_metrics
from core.bench.multiview import dense_correspondences, perturb_cameras
from core.bench.synthetic import FACE_REGION, camera_looking_at, make_case, smooth_field
from core.fit.observations import ViewObservation
from core.geometry import Laplacian, MeshTopology
from core.multiview import (BAOptions, ViewCorrespondences, from_landmarks, from_vertex_targets,
                            rotation_errors_deg, similarity_transform, topology_ba)
from core.multiview.topology_ba import _inliers
from core.geometry.camera import Cameras
from core.render import project_surface_points, rasterize, surface_points, visible_points
from core.template import LMK_CONTOUR, LMK_UNUSED, load_default

RES = 256
ANGLES = ((0, 0), (30, 5), (-30, -5), (0, 15), (40, 0), (-40, 0))
# A short schedule: the test compares 1 and 3 views, it does not need a converged fit.
FAST_FIT = {"preset": "draft", "schedule": {"stages": {"rig": {"iterations": 40}, "joint": {"iterations": 10},
                                                       "vertex": {"iterations": 15}}},
            "multiview_ba_options": {"rounds": 2, "iterations": 80}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Fits here are small; on a shared 2-core machine two torch threads spin against each
    other (measured: a short fit takes 37 s with two threads under load, 3 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def template():
    return load_default()


@pytest.fixture(scope="module")
def scene(template):
    """A known identity (template + 3 mm rms smooth field) and six known cameras around the face."""
    rng = np.random.default_rng(7)
    gt = (template.verts + smooth_field(template, rng, rms_m=0.003)).astype(np.float32)
    centre = gt[template.regions[FACE_REGION]].mean(0)
    cams = [camera_looking_at(centre, yaw, pitch, 0.7, 2.4 * RES, RES) for yaw, pitch in ANGLES]
    return gt, cams


def dense_views(template, gt, cams, rng, noise_px=0.3, outlier_frac=0.1, outlier_px=25.0):
    return dense_correspondences(template, gt, cams, rng, noise_px, outlier_frac, outlier_px)


def perturbed(cams, rng):
    return perturb_cameras(cams, rng)


def rot_error(template, verts, gt, est_R, cams):
    face = template.regions[FACE_REGION]
    _, R_align, _ = similarity_transform(verts[face].astype(np.float64), gt[face].astype(np.float64))
    return rotation_errors_deg(np.stack(est_R), torch.cat([c.R for c in cams]).numpy(), R_align)


def test_topology_ba_recovers_cameras_and_vertices_with_outliers(template, scene):
    gt, cams = scene
    rng = np.random.default_rng(1)
    corrs, outliers = dense_views(template, gt, cams, rng)
    init = perturbed(cams, rng)
    face = template.regions[FACE_REGION]
    before = mesh_metrics(template.verts, gt, template.tris, face)["rmse_mm"]
    rot_before = rot_error(template, template.verts, gt, [c.numpy()[1] for c in init], cams).mean()
    res = topology_ba(template.verts, template.tris, corrs, init)
    after = mesh_metrics(res.verts, gt, template.tris, face)["rmse_mm"]
    rot_after = rot_error(template, res.verts, gt, [c.numpy()[1] for c in res.cameras], cams)
    assert after < 0.35 * before and after < 1.0, (before, after)
    assert rot_after.mean() < 0.3 * rot_before and rot_after.max() < 0.5, (rot_before, rot_after)
    # Outlier rejection: nearly every planted outlier is flagged, nearly every good point kept.
    flagged = np.concatenate([~m for m in res.inliers])
    planted = np.concatenate(outliers)
    assert flagged[planted == 1].mean() > 0.95
    assert flagged[planted == 0].mean() < 0.05
    assert max(res.rms_px) < 1.0
    focal = np.array([float(c.K[0, 0, 0]) for c in res.cameras]) / np.array([float(c.K[0, 0, 0]) for c in cams])
    assert np.abs(focal - 1).max() < 0.03  # started 3 % off; scale is a gauge shared with the mesh


def test_outlier_rejection_rule():
    r = torch.tensor([[0.5, 0.7, 0.6, 0.4, 30.0, 0.55], [1.0, 1.2, 0.9, 1.1, 1.0, 8.0]])
    seen = torch.ones_like(r, dtype=torch.bool)
    seen[0, 5] = False
    keep = _inliers(r, seen, torch.tensor([256.0, 256.0]), BAOptions())
    # 30 px and 8 px are far outside each view's own spread; unseen points are never inliers.
    assert keep.tolist() == [[True, True, True, True, False, False], [True, True, True, True, True, False]]


def test_laplacian_keeps_mesh_smooth_where_views_disagree(template, scene):
    gt, cams = scene
    rng = np.random.default_rng(2)
    views = cams[:2]
    corrs, _ = dense_views(template, gt, views, rng, noise_px=0.0, outlier_frac=0.0)
    # Each view says something different about every vertex (independent 2 px jitter).
    for c in corrs:
        c.pixels += rng.normal(0, 2.0, c.pixels.shape).astype(np.float32)
    init = views
    lap = Laplacian.uniform(MeshTopology.from_faces(torch.as_tensor(template.tris), template.num_verts), torch.float64)

    def roughness(opts):
        res = topology_ba(gt, template.tris, corrs, init, opts)
        d = torch.as_tensor((res.verts - gt) * 1000.0, dtype=torch.float64)
        return float(lap.apply(d[None])[0].norm(dim=1).mean())

    common = dict(rounds=1, iterations=120, refine_focal=False, lr_rotation=0.0, lr_translation=0.0)
    smooth = roughness(BAOptions(**common))
    rough = roughness(BAOptions(laplacian_weight=0.0, large_steps_lambda=0.5, **common))
    assert smooth < 0.3 * rough, (smooth, rough)


def test_colmap_then_largesteps_baseline(template, scene):
    pytest.importorskip("pycolmap")
    from core.multiview import colmap_then_largesteps

    gt, cams = scene
    rng = np.random.default_rng(3)
    corrs, outliers = dense_views(template, gt, cams, rng)
    init = perturbed(cams, rng)
    face = template.regions[FACE_REGION]
    res = colmap_then_largesteps(template.verts, template.tris, corrs, init)
    before = mesh_metrics(template.verts, gt, template.tris, face)["rmse_mm"]
    after = mesh_metrics(res.verts, gt, template.tris, face)["rmse_mm"]
    assert after < 0.5 * before, (before, after)
    assert np.concatenate([~m for m in res.inliers])[np.concatenate(outliers) == 1].mean() > 0.9


def test_correspondences_reject_bad_input(template):
    with pytest.raises(ValueError, match="must both be"):
        ViewCorrespondences(RES, RES, np.zeros((3, 2)), np.zeros((3, 3)), np.zeros((3, 2)), np.ones(3), np.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        from_vertex_targets(RES, RES, np.full((4, 2), np.nan), np.ones(4, bool))
    with pytest.raises(ValueError, match="embeds"):
        from_landmarks(template, RES, RES, np.zeros((10, 2)), np.ones(10))
    good = from_vertex_targets(RES, RES, np.zeros((4, 2)), np.ones(4, bool))
    cam = Cameras.from_numpy(np.eye(3), np.eye(3), np.zeros(3), RES, RES)
    with pytest.raises(ValueError, match="outside"):
        topology_ba(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]]), [good], [cam])
    with pytest.raises(ValueError, match="one camera per view"):
        topology_ba(np.zeros((4, 3), np.float32), np.array([[0, 1, 2]]), [good], [])


def landmark_view(template, verts: np.ndarray, cam, name: str) -> ViewObservation:
    """The embedded landmarks of ``verts`` seen through ``cam`` (hidden surface points get weight 0)."""
    cams = cam
    vt = torch.as_tensor(verts, dtype=torch.float64)[None]
    tris = torch.as_tensor(template.tris)
    lmk_tri = torch.as_tensor(template.lmk_tri)
    lmk_bary = torch.as_tensor(template.lmk_bary, dtype=torch.float64)
    uv, _ = project_surface_points(vt, tris, lmk_tri, lmk_bary, cams)
    visible = visible_points(surface_points(vt, tris, lmk_tri, lmk_bary), cams, rasterize(vt, tris, cams))[0].numpy()
    kind = np.asarray(template.lmk_kind)
    weight = ((visible | (kind == LMK_CONTOUR)) & (kind != LMK_UNUSED)).astype(np.float32)
    return ViewObservation(RES, RES, uv[0].numpy().astype(np.float32), weight, name=name)


def test_fit_views_three_views_beat_one(template):
    from core.fit.options import FitOptions
    from core.fit.pipeline import fit_views

    case = make_case(template, seed=11, res=RES, expression=False)
    centre = case.verts[template.regions[FACE_REGION]].mean(0)
    cams = [camera_looking_at(centre, yaw, pitch, 0.7, 2.4 * RES, RES) for yaw, pitch in ((0, 0), (35, 5), (-35, -5))]
    views = [landmark_view(template, case.verts, c, f"v{i}") for i, c in enumerate(cams)]
    face = template.regions[FACE_REGION]

    def fit(vs, **options):
        records = list(fit_views(template, vs, FitOptions.from_dict({**FAST_FIT, **options})))
        assert [r.step for r in records] == sorted(r.step for r in records)
        # The bundle adjustment is one stage of the one loop: one record, with the adjusted mesh.
        ba = [r for r in records if r.stage == "bundle_adjust"]
        assert len(ba) == (1 if "multiview_ba" in options else 0)
        if ba:
            assert ba[0].losses["reprojection_rms_px"] > 0 and ba[0].camera["K"].shape == (3, 3)
            assert np.array_equal(ba[0].verts, records[-1].result.arrays["verts_ba"])
        return records[-1].result

    one = fit(views[:1])
    three = fit(views, multiview_ba="topology_ba")
    err_one = mesh_metrics(one.arrays["verts"], case.verts, template.tris, face)["rmse_mm"]
    err_three = mesh_metrics(three.arrays["verts"], case.verts, template.tris, face)["rmse_mm"]
    assert three.meta["multiview"]["ba"] == "topology_ba"
    assert [s["name"] for s in three.meta["stages"]] == ["rig", "bundle_adjust", "joint", "vertex"]
    assert three.arrays["R"].shape == (3, 3, 3)
    assert err_three < 0.85 * err_one, (err_one, err_three)
    rot = rot_error(template, three.arrays["verts"], case.verts, list(three.arrays["R"]), cams)
    assert rot.max() < 3.0, rot  # a short schedule: cameras in the right basin, not converged
    # The default for several photos: the stages on all views, no adjustment.
    plain = fit(views)
    assert plain.meta["multiview"] == {"ba": "off"} and plain.arrays["R"].shape == (3, 3, 3)
    err_plain = mesh_metrics(plain.arrays["verts"], case.verts, template.tris, face)["rmse_mm"]
    assert err_plain < 0.85 * err_one, (err_one, err_plain)


def test_hide_backfacing_zeroes_far_side_landmarks(template):
    from core.fit.bundle_adjust import hide_backfacing

    centre = template.verts[template.regions[FACE_REGION]].mean(0)
    front = camera_looking_at(centre, 0, 0, 0.7, 2.4 * RES, RES)
    side = camera_looking_at(centre, 60, 0, 0.7, 2.4 * RES, RES)
    views = [landmark_view(template, template.verts, c, n) for c, n in ((front, "front"), (side, "side"))]
    for v in views:
        v.landmark_weight[:] = 1.0  # a detector reports every point, hidden or not
    out = hide_backfacing(template, template.verts, [front, side], views)
    surface = np.asarray(template.lmk_kind) == 1
    hidden_front = surface & (out[0].landmark_weight == 0)
    hidden_side = surface & (out[1].landmark_weight == 0)
    assert hidden_front.sum() < 0.05 * surface.sum()
    assert hidden_side.sum() > 0.1 * surface.sum()
    # The hidden points lie on the half of the face away from the side camera.
    tri = template.tris[template.lmk_tri]
    pts = (template.verts[tri] * template.lmk_bary[..., None]).sum(1)
    cam_x = float(side.centers()[0, 0])
    assert np.sign(pts[hidden_side, 0].mean() - centre[0]) == -np.sign(cam_x - centre[0])
    assert (out[1].landmark_weight[~surface] == 1).all()  # silhouette points are never dropped
    assert views[1].landmark_weight.min() == 1.0  # inputs untouched


def test_detector_bias_and_exact_landmarks(template, scene):
    """Triangulating exact projections from the true cameras gives back the embedded
    points; a detector that shifts every landmark by 2 mm in 3-D shows as a 2 mm bias."""
    from core.bench.multiview import detector_bias, with_exact_landmarks, with_normal_maps
    from core.geometry.embedding import triangulate

    gt, cams = scene
    blank = [ViewObservation(RES, RES, np.zeros((478, 2), np.float32), np.ones(478, np.float32), name=f"v{j}")
             for j in range(len(cams))]
    exact = with_exact_landmarks(template, gt, cams, blank + [None])[:-1]
    assert all(v.landmarks.shape == (478, 2) and np.isfinite(v.landmarks).all() for v in exact)
    mapped = with_normal_maps(template, gt, cams[:2], [exact[0], None])
    assert mapped[1] is None and mapped[0].normals.shape == (RES, RES, 3) and mapped[0].normal_mask.mean() > 0.05
    assert np.array_equal(mapped[0].landmarks, exact[0].landmarks)
    assert detector_bias(template, gt, cams, exact)["rms_mm"] < 1e-3
    assert detector_bias(template, gt, cams[:1], exact[:1]) == {}  # one view triangulates nothing
    # A 3-D shift of 2 mm (as if the detector named other points), then projected.
    shifted = with_exact_landmarks(template, gt + np.float32([0.0, 0.0, 0.002]), cams, blank)
    bias = detector_bias(template, gt, cams, shifted)
    assert bias["rms_mm"] == pytest.approx(2.0, abs=0.05) and bias["views"] == len(cams)
    # Triangulation of points in general position.
    pts = np.random.default_rng(0).normal(0, 0.03, (20, 3)) + gt[template.regions[FACE_REGION]].mean(0)
    uv = np.stack([c.project(torch.as_tensor(pts)[None])[0][0].numpy() for c in cams])
    assert np.abs(triangulate(cams, uv).points - pts).max() < 1e-6
