"""The teeth seated behind the lips (core/template/mouth.py)."""

from __future__ import annotations

import numpy as np

from core.template import load_default
from core.template.mouth import MOUTH_PARTS, seat_teeth, teeth_through_lips


def test_the_template_stays_and_teeth_pushed_into_the_lips_go_back():
    t = load_default()
    verts, parts = np.asarray(t.verts), np.asarray(t.part_verts)
    same, mm = seat_teeth(t, verts, parts)
    assert mm == 0.0 and np.array_equal(same, parts)
    allowed = teeth_through_lips(t, verts, parts)

    names = list(t.part_names)
    mouth = np.isin(np.asarray(t.part_vert_part), [names.index(n) for n in MOUTH_PARTS])
    forward = parts.copy()
    forward[mouth, 1] -= 2e-3  # 2 mm towards the front: the incisors into the lips
    assert teeth_through_lips(t, verts, forward) > allowed + 20
    seated, mm = seat_teeth(t, verts, forward)
    assert 0.0 < mm <= 2.0 and teeth_through_lips(t, verts, seated) <= allowed
    np.testing.assert_allclose(seated[~mouth], parts[~mouth])  # the eyes stay
    np.testing.assert_allclose(seated[mouth] - forward[mouth], np.broadcast_to([0, mm * 1e-3, 0], (mouth.sum(), 3)),
                               atol=1e-7)  # float32 parts


def test_the_jaw_and_an_upper_lip_hung_under_it():
    """jaw_joint: the default head's own jaw, or the bone an import says stands for it;
    upper_lip_joints: the joints under the jaw that weigh the upper inner lip line more than the
    lower one, with the joints under them (the upper lip of a rig whose constraints open its mouth),
    and nothing on the default head, whose upper lip is not under its jaw."""
    from types import SimpleNamespace

    from core.template.mouth import jaw_joint, upper_lip_joints

    t = load_default()
    assert jaw_joint(t) == "jaw" and upper_lip_joints(t, "jaw") == []

    # face -> jaw_master -> {lip_top -> lip_top_end, lip_bottom, chin}; cheek under face
    names = ["face", "jaw_master", "lip_top", "lip_bottom", "chin", "lip_top_end", "cheek"]
    parents = np.array([-1, 0, 1, 1, 1, 2, 0])
    upper, lower = np.array([0, 1, 2]), np.array([3, 4, 5])
    idx = np.zeros((8, 2), np.int64)
    w = np.zeros((8, 2), np.float32)
    idx[upper], w[upper] = [2, 6], [0.6, 0.4]    # the upper line: lip_top, some cheek
    idx[lower], w[lower] = [3, 2], [0.8, 0.2]    # the lower line: mostly lip_bottom
    idx[6:], w[6:] = [4, 0], [1.0, 0.0]          # the chin
    rig = SimpleNamespace(joint_names=names, joint_parents=parents, skin_idx=idx, skin_w=w, num_verts=8,
                          regions={"mouth_upper_inner": upper, "mouth_lower_inner": lower},
                          info={"confidence": {"armature": {"default_joints": {"jaw": "jaw_master"}}}})
    assert jaw_joint(rig) == "jaw_master"
    assert upper_lip_joints(rig, "jaw_master") == ["lip_top", "lip_top_end"]  # cheek is not under the jaw
    assert upper_lip_joints(rig, "chin") == [] and upper_lip_joints(rig, "nose") == []
    rig.info = {}
    assert jaw_joint(rig) is None  # no bone named jaw, and none stands for it


def test_a_move_that_turns_faces_over_is_smoothed_where_it_does():
    """untangle_move, which a lip seal that turns thin faces over goes through."""
    from core.geometry.mesh_layout import face_turn_cosine
    from core.template.mouth import untangle_move

    t = load_default()
    v, tris = np.asarray(t.verts, np.float64), np.asarray(t.tris)
    upper = np.asarray(t.regions["mouth_upper_inner"])
    i = int(upper[np.argmin(np.abs(v[upper, 0]))])  # the upper lip's inner line at the middle
    moved = v.copy()
    moved[i, 2] -= 2e-3  # pushed 2 mm down, through the faces below it
    assert (face_turn_cosine(v, moved, tris) < 0).sum() > 0
    out = untangle_move(v, moved, tris)
    assert not (face_turn_cosine(v, out, tris) < 0).any()
    changed = np.linalg.norm(out - moved, axis=1) > 0
    assert 0 < changed.sum() < 40  # only around the turned faces
    assert np.abs(out - v).max() <= 2e-3 + 1e-12
    np.testing.assert_array_equal(untangle_move(v, v.copy(), tris), v)  # nothing turned: nothing moves
