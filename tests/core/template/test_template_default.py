"""The default MakeHuman head template: structure, rig, symmetry, regions, landmark mapping, cache."""

import json

import numpy as np
import pytest
import torch

from core.template import TemplateError, TemplateModel, build_default, controller_mirror, load_default, mirror_setting
from core.template import build as build_mod
from core.template.landmarks import embed_landmarks, read_embedding
from core.template.symmetry import MIRROR_SIGN, mirror_joint_names


@pytest.fixture(scope="module")
def template():
    return build_default(embedding_path=None)


def poly_edges(t):
    """(E, 2) undirected edges of all polygons."""
    starts, ends = t.poly_start[:-1], t.poly_start[1:]
    nxt = np.arange(len(t.poly_verts)) + 1
    nxt[ends - 1] = starts
    return np.sort(np.stack([t.poly_verts, t.poly_verts[nxt]], 1), 1)


def test_structure(template):
    t = template
    assert 4200 <= t.num_verts <= 4400
    assert t.num_quads == t.num_polys  # quads kept
    assert len(t.uvs) == 4 * t.num_polys and (t.uvs >= 0).all() and (t.uvs <= 1).all()
    edges, counts = np.unique(poly_edges(t), axis=0, return_counts=True)
    assert counts.max() == 2
    boundary = edges[counts == 1]
    # one clean loop: every boundary vertex has exactly two boundary edges, and they connect
    assert (np.bincount(boundary.ravel())[np.unique(boundary)] == 2).all()
    adj = {}
    for a, b in boundary:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    seen, stack = set(), [boundary[0, 0]]
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack += adj[v]
    assert len(seen) == len(adj)
    assert t.verts[list(seen), 2].max() < t.verts[t.regions["mouth_corners"], 2].min()  # the loop is the neck
    # metres, Blender frame: the face (nose tip = most −Y point) looks toward −Y, the head is ~0.2–0.3 m tall
    assert 0.2 < np.ptp(t.verts[:, 2]) < 0.35
    nose = t.verts[np.argmin(t.verts[:, 1])]
    assert abs(nose[0]) < 1e-3 and nose[2] > t.verts[t.regions["mouth_corners"], 2].max()


def test_controllers(template):
    t = template
    shape = ~t.ctrl_is_expression
    assert shape.sum() == 149 and t.ctrl_is_expression.sum() == 52
    assert "jawOpen" in t.ctrl_names and "nose-scale-horiz-decr-incr" in t.ctrl_names
    lo = t.ctrl_bounds[:, 0]
    assert set(np.unique(lo).tolist()) == {-1.0, 0.0} and (t.ctrl_bounds[:, 1] == 1).all()
    assert (lo[t.ctrl_is_expression] == 0).all()
    skin = np.abs(t.ctrl_basis).reshape(t.num_controllers, -1).max(1)
    parts = np.abs(t.part_ctrl_basis).reshape(t.num_controllers, -1).max(1)
    assert np.maximum(skin, parts).min() > 1e-4  # every controller moves something (tongueOut: only the tongue)
    assert parts[t.ctrl_index("tongueOut")] > 0.01
    # a nose controller moves the nose, not the ears; its joints' offsets follow the strategy vertices
    k = t.ctrl_index("nose-scale-horiz-decr-incr")
    moved = np.abs(t.ctrl_basis[k, 0]).max(1) > 1e-5
    assert t.verts[moved, 1].mean() < t.verts[:, 1].mean() - 0.03
    k = t.ctrl_index("head-scale-vert-decr-incr")
    assert np.abs(t.ctrl_joint_basis[k, 0]).max() > 1e-3  # joint cubes move with identity targets


def test_joints(template):
    t = template
    assert t.num_joints == 63 and t.joint_names[0] == "neck01" and t.joint_parents[0] == -1
    for name in ("head", "jaw", "eye.L", "eye.R", "tongue00", "orbicularis03.L", "oris01"):
        assert name in t.joint_names
    y = t.joint_rest[:, :3, 1]
    d = t.joint_tails - t.joint_heads
    np.testing.assert_allclose(y, d / np.linalg.norm(d, axis=1, keepdims=True), atol=1e-5)
    # the eyeball parts follow the eye bones and sit around them
    for side in "LR":
        j = t.joint_index(f"eye.{side}")
        part = t.part_vert_part == t.part_names.index(f"eyeball.{side}")
        assert (t.part_joint[part] == j).all()
        assert np.linalg.norm(t.part_verts[part].mean(0) - t.joint_heads[j]) < 0.01
    assert (t.part_joint[t.part_vert_part == t.part_names.index("teeth.lower")] == t.joint_index("jaw")).all()


def test_jaw_rotation_opens_the_mouth(template):
    t = template
    model = TemplateModel(t)
    theta = torch.zeros(1, t.num_joints, 9)
    theta[0, t.joint_index("jaw"), 0] = 0.3  # about the bone's X axis
    r = torch.zeros(1, t.num_controllers)
    rest, posed = model.deform(r).verts[0], model.deform(r, theta).verts[0]
    lower_lip = t.regions["mouth_ring"][np.argmin(t.verts[t.regions["mouth_ring"], 2])]
    chin = np.argmin(np.where(np.abs(t.verts[:, 0]) < 1e-4, t.verts[:, 2] + 10 * (t.verts[:, 1] > -0.08), 9))
    moved = (posed - rest).norm(dim=1)
    assert moved[lower_lip] > 0.003 and moved[chin] > 0.005
    top = int(np.argmax(t.verts[:, 2]))
    assert moved[top] < 1e-6
    parts = model.deform(r, theta).parts[0] - model.deform(r).parts[0]
    lower = torch.as_tensor(t.part_vert_part == t.part_names.index("teeth.lower"))
    assert parts[lower].norm(dim=1).min() > 1e-3 and parts[~lower].norm(dim=1).max() < 1e-3 + parts[lower].norm(dim=1).max()


def test_symmetric_setting_gives_a_symmetric_head(template):
    t = template
    np.testing.assert_allclose(t.verts[t.mirror] * MIRROR_SIGN, t.verts, atol=1e-6)
    partner, flip = controller_mirror(t)
    assert (partner >= 0).sum() >= t.num_controllers - 2
    assert partner[t.ctrl_index("l-eye-height1-decr-incr")] == t.ctrl_index("r-eye-height1-decr-incr")
    assert partner[t.ctrl_index("eyeBlinkLeft")] == t.ctrl_index("eyeBlinkRight")
    assert flip[t.ctrl_index("nose-trans-in-out")]
    rng = np.random.default_rng(0)
    r = rng.uniform(t.ctrl_bounds[:, 0], t.ctrl_bounds[:, 1]) * 0.7
    r[partner < 0] = 0
    safe = np.where(partner >= 0, partner, np.arange(len(partner)))
    r = 0.5 * (r + mirror_setting(r, safe, flip))
    model = TemplateModel(t, dtype=torch.float64)
    out = model.deform(torch.as_tensor(r)[None])
    v = out.verts[0].numpy()
    np.testing.assert_allclose(v[t.mirror] * MIRROR_SIGN, v, atol=1e-6)
    heads = out.rest_joints[0, :, :3, 3].numpy()
    jm = mirror_joint_names(t.joint_names)
    np.testing.assert_allclose(heads[jm] * MIRROR_SIGN, heads, atol=1e-6)
    # and an asymmetric setting is not symmetric (the test can fail)
    r2 = r.copy()
    r2[t.ctrl_index("l-eye-height1-decr-incr")] += 0.5
    v2 = model.deform(torch.as_tensor(r2)[None]).verts[0].numpy()
    assert np.abs(v2[t.mirror] * MIRROR_SIGN - v2).max() > 1e-4


def test_regions(template):
    t = template
    edges = {tuple(e) for e in poly_edges(t).tolist()}
    for side in "lr":
        up, low = t.regions[f"eye_{side}_upper_lid"], t.regions[f"eye_{side}_lower_lid"]
        corners = t.regions[f"eye_{side}_corners"]
        for curve in (up, low):
            assert all(tuple(sorted(p)) in edges for p in zip(curve[:-1].tolist(), curve[1:].tolist()))
            assert curve[0] == corners[0] and curve[-1] == corners[1]
        assert t.verts[up[1:-1], 2].mean() > t.verts[low[1:-1], 2].mean()
        assert abs(t.verts[corners[0], 0]) < abs(t.verts[corners[1], 0])  # inner corner nearer the nose
        assert np.sign(t.verts[up, 0]).mean() == (1 if side == "l" else -1)
    assert set(t.mirror[t.regions["eye_l_ring"]]) == set(t.regions["eye_r_ring"])
    mc = t.regions["mouth_corners"]
    assert t.verts[mc[0], 0] > 0.02 and t.mirror[mc[0]] == mc[1]
    face = t.regions["face_mask"]
    assert 1000 < len(face) < t.num_verts and np.isin(t.regions["eye_l_ring"], face).all()
    assert set(t.regions["mouth_ring"]) <= set(t.regions["lips"]) | set(face)


def make_embedding(t, path, split_ok=True):
    """Three landmarks on three template quads, written the way the embedding file names them."""
    quads = t.poly_verts.reshape(-1, 4)
    base = t.source_vertex_id[quads[[10, 500, 2000]]]
    a, b, c, d = base.T
    tris = [[a[0], b[0], c[0]], [a[1], c[1], d[1]], [a[2], b[2], c[2]] if split_ok else [a[2], b[2], d[2]]]
    lm = [{"id": i, "tri": [int(x) for x in tri], "bary": [0.2, 0.3, 0.5], "kind": k}
          for i, (tri, k) in enumerate(zip(tris, ["surface", "contour", "surface"]))]
    lm.append({"id": 3, "kind": "unused"})
    path.write_text(json.dumps({"format_version": 1, "source": "mpfb2 base.obj", "landmarks": lm,
                                "subsets": {"corners": [0, 2], "contours": {"face_oval": [1]}}}))
    return quads[[10, 500, 2000]]


def test_landmark_mapping_from_a_hand_made_embedding(template, tmp_path):
    t = template
    path = tmp_path / "emb.json"
    quads = make_embedding(t, path)
    lmk_tri, bary, kind, subsets = embed_landmarks(read_embedding(path), t.source_vertex_id, t.tris)
    np.testing.assert_array_equal(t.tris[lmk_tri[0]], quads[0, [0, 1, 2]])
    np.testing.assert_array_equal(t.tris[lmk_tri[1]], quads[1, [0, 2, 3]])
    assert kind.tolist() == [1, 2, 1, 0]
    np.testing.assert_allclose(bary[:3], [[0.2, 0.3, 0.5]] * 3, atol=1e-7)
    assert subsets["corners"].tolist() == [0, 2] and subsets["face_oval"].tolist() == [1]
    make_embedding(t, path, split_ok=False)
    with pytest.raises(TemplateError, match="landmark 2: base.obj triangle .* is not a template triangle"):
        embed_landmarks(read_embedding(path), t.source_vertex_id, t.tris)
    path.write_text(json.dumps({"format_version": 1, "landmarks": [{"id": 0, "kind": "eye"}]}))
    with pytest.raises(TemplateError, match="kind 'eye'"):
        read_embedding(path)


def test_build_is_deterministic_and_cached(template, tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path))
    monkeypatch.setattr(build_mod, "EMBEDDING_PATH", tmp_path / "absent.json")
    again = build_default(embedding_path=None)
    assert again.to_bytes() == template.to_bytes()
    assert "landmarks    0 (no embedding file)" in template.summary()
    path = build_mod.default_cache_path()
    assert path.parent == tmp_path and "embnone" in path.name
    monkeypatch.setattr(build_mod, "build_default", lambda *a, **k: template)
    assert load_default().to_bytes() == template.to_bytes()
    digest = path.with_name(path.name + ".sha256")
    assert path.read_bytes() == template.to_bytes() and digest.exists()


def test_corrupt_cache_is_detected_and_rebuilt(template, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path))
    builds = []
    monkeypatch.setattr(build_mod, "build_default", lambda *a, **k: builds.append(1) or template)
    load_default()
    path = build_mod.default_cache_path()
    for corrupt in (lambda b: b[: len(b) // 2], lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:]):
        path.write_bytes(corrupt(path.read_bytes()))
        assert load_default().to_bytes() == template.to_bytes()
        assert "is corrupt; rebuilding it" in capsys.readouterr().err
    assert len(builds) == 3 and path.read_bytes() == template.to_bytes()
    load_default()
    assert len(builds) == 3  # an intact cache is read, not rebuilt
