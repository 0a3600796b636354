"""A fitted rest shape kept safe under its bones' poses (core/fit/pose_safe.py) and the poses
themselves (core/template/rig_poses.py).

The squeezed head here is the default head with its left eye's lid area shrunk to 60 % about
the eye's centre, as a fit of a small eye would: where the skin weights step across the shrunk
edges, the eye and jaw turns stretch them past the template's worst.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.fit.pose_safe import (REST_SHRINK_MIN, STRETCH_SHARE, keep_safe_under_bone_poses, pose_edges_tris,
                                pose_figures)
from core.template import TemplateModel, load_default
from core.template.rig_poses import POSES, bone_poses, euler_xyz, pose_transforms, skin_pose
from core.template.rig_ready import lid_distance


@pytest.fixture(scope="module")
def template():
    return load_default()


def test_a_turned_joint_turns_what_hangs_below_it_about_its_head(template):
    names = list(template.joint_names)
    jaw = names.index("jaw")
    rel = pose_transforms(template, template.joint_rest, {"jaw": (25, 0, 0)})
    head = np.asarray(template.joint_rest[jaw, :3, 3], np.float64)
    assert np.allclose(rel[jaw, :, :3] @ head + rel[jaw, :, 3], head)  # the head stays
    turn = np.degrees(np.arccos((np.trace(rel[jaw, :, :3]) - 1) / 2))
    assert abs(turn - 25) < 1e-6
    parents = np.asarray(template.joint_parents)
    below = np.zeros(len(names), bool)
    for j in range(len(names)):
        below[j] = j == jaw or (parents[j] >= 0 and below[parents[j]])
    assert np.allclose(rel[below], rel[jaw]) and np.allclose(rel[~below], np.eye(4)[:3])
    # Held joints stay where they rest, and so does what hangs below them.
    child = int(np.flatnonzero(parents == jaw)[0])
    held = pose_transforms(template, template.joint_rest, {"jaw": (25, 0, 0)}, held=(names[child],))
    assert np.allclose(held[child], np.eye(4)[:3]) and np.allclose(held[jaw], rel[jaw])


def test_skinning_a_pose_matches_the_model_turning_the_same_joint(template):
    """The same jaw turn through the torch model's joint parameters (axis-angle in the joint's
    frame) and through pose_transforms + skin_pose."""
    model = TemplateModel(template, dtype=torch.float64)
    params = torch.zeros(1, template.num_joints, 9, dtype=torch.float64)
    params[0, template.joint_index("jaw"), 0] = np.radians(25)
    ctrl = torch.zeros(1, template.num_controllers, dtype=torch.float64)
    theirs = model.deform(ctrl, params, parts=False).verts[0].numpy()
    rest = model.deform(ctrl, None, parts=False).verts[0].numpy()
    ours = skin_pose(template, rest, pose_transforms(template, template.joint_rest, {"jaw": (25, 0, 0)}))
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.allclose(euler_xyz((0, 0, 90)) @ [1, 0, 0], [0, 1, 0])


def test_the_bone_poses_are_the_checks_bone_poses(template):
    made = {name for name, *_ in bone_poses(template)}
    expected = {name for name, bones, keys in POSES if not keys and any(any(d) for d in bones.values())}
    assert made == expected and "eyes_left" in made and "jaw_25" in made


def test_the_template_is_left_as_it_is(template):
    out, report = keep_safe_under_bone_poses(template, np.asarray(template.verts), template.joint_rest)
    assert report["moved_mm"] == 0.0 and np.array_equal(out, np.asarray(template.verts))
    assert report["before"]["stretch_ratio_max"] == pytest.approx(1.0)


def test_a_squeezed_eye_is_moved_until_its_poses_are_no_worse_than_the_templates(template):
    v = np.asarray(template.verts, np.float64).copy()
    area = np.flatnonzero(lid_distance(template, "l", 4) >= 0)
    centre = v[np.asarray(template.regions["eye_l_ring"])].mean(0)
    v[area] = centre + 0.6 * (v[area] - centre)
    edges, tris = pose_edges_tris(template)
    ref = pose_figures(template, template.verts, template.joint_rest, edges, tris)

    def worst(x):
        fig = pose_figures(template, x, template.joint_rest, edges, tris)
        return (max(fig[p]["max_edge_stretch"] / max(ref[p]["max_edge_stretch"], 1e-9) for p in fig),
                max(fig[p]["flipped_faces"] - ref[p]["flipped_faces"] for p in fig))

    ratio, extra = worst(v)
    assert ratio > 1.5  # the squeeze fails the rig check (1.5x the template's worst)
    out, report = keep_safe_under_bone_poses(template, v.astype(np.float32), template.joint_rest)
    assert out.dtype == np.float32
    ratio_after, extra_after = worst(out.astype(np.float64))
    assert ratio_after < STRETCH_SHARE + 0.05 and extra_after <= 0, (ratio, extra, ratio_after, extra_after)
    assert report["after"]["stretch_ratio_max"] == pytest.approx(ratio_after, rel=1e-3)
    moved = np.linalg.norm(out - v, axis=1)
    assert 0 < report["moved_mm"] < 3.0 and moved.max() == pytest.approx(report["moved_mm"] * 1e-3, rel=1e-3)
    # Only the eye's surroundings move: nothing on the other side of the face.
    assert moved[np.asarray(template.verts)[:, 0] < -0.01].max() == 0.0
    # No rest edge is squeezed to make a pose pass (a squeezed edge stretches under the keys).
    length = np.linalg.norm(out[edges[:, 0]] - out[edges[:, 1]], axis=1)
    shrink = length / np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    assert shrink.min() > REST_SHRINK_MIN - 0.1, shrink.min()  # a soft bound; 0.57 without it
