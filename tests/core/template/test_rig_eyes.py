"""The eye bones are mirror images: mirrored rotations give mirrored corneas, one rotation turns both eyes alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.template import TemplateModel, load_default
from core.template.deform import JOINT_PARAM_DIM
from core.template.symmetry import MIRROR_SIGN


@pytest.fixture(scope="module")
def model():
    return TemplateModel(load_default(), dtype=torch.float64)


def _eyes(model, rot_l, rot_r):
    """Posed eyes, each its eyeball then its cornea (left (n, 3), right (n, 3)), with local axis-angle
    rotations (degrees) of the eye bones."""
    t = model.template
    params = torch.zeros(1, t.num_joints, JOINT_PARAM_DIM, dtype=torch.float64)
    params[0, t.joint_index("eye.L"), :3] = torch.tensor(np.radians(rot_l))
    params[0, t.joint_index("eye.R"), :3] = torch.tensor(np.radians(rot_r))
    parts = model.deform(model.default_controllers(), params).parts[0].numpy()
    part = t.part_vert_part
    return tuple(np.concatenate([parts[part == t.part_names.index(f"{p}.{s}")] for p in ("eyeball", "cornea")])
                 for s in "LR")


def _cornea(eye):
    """The cornea's vertices of an eye from ``_eyes`` (the same vertices whatever the pose)."""
    t = load_default()
    return eye[-int((t.part_vert_part == t.part_names.index("cornea.L")).sum()):]


@pytest.mark.parametrize("rot", [(25, 0, 0), (0, 0, 25), (0, 25, 0), (-15, 0, 20), (10, 5, -25)])
def test_mirrored_rotations_give_mirrored_corneas(model, rot):
    a, b, c = rot
    rest_l, rest_r = _eyes(model, (0, 0, 0), (0, 0, 0))
    # the rest eyeballs are mirror images: pair each left vertex with its mirrored right one
    pair = np.argmin(np.linalg.norm(rest_l[:, None] - (rest_r * MIRROR_SIGN)[None], axis=2), axis=1)
    assert np.abs(rest_l - rest_r[pair] * MIRROR_SIGN).max() < 1e-4
    left, right = _eyes(model, (a, b, c), (a, -b, -c))
    gap = np.linalg.norm(left - right[pair] * MIRROR_SIGN, axis=1)
    assert gap.max() < 1e-4, gap.max()  # 0.1 mm
    moved = np.linalg.norm(_cornea(left) - _cornea(rest_l), axis=1).mean()
    assert moved > 1e-3  # the rotation does move the cornea


def test_one_rotation_turns_both_eyes_alike(model):
    """+25° about the eye bones' Z: both eyes look the same way, neither up nor down (a conjugate gaze)."""
    rest_l, rest_r = _eyes(model, (0, 0, 0), (0, 0, 0))
    left, right = _eyes(model, (0, 0, 25), (0, 0, 25))
    dl = _cornea(left).mean(0) - _cornea(rest_l).mean(0)
    dr = _cornea(right).mean(0) - _cornea(rest_r).mean(0)
    assert abs(dl[0]) > 1e-3 and np.sign(dl[0]) == np.sign(dr[0])  # sideways, the same way
    assert abs(dl[2]) < 2e-4 and abs(dr[2]) < 2e-4  # not up or down
    up_l, up_r = _eyes(model, (20, 0, 0), (20, 0, 0))
    ul, ur = (_cornea(up_l).mean(0) - _cornea(rest_l).mean(0)), (_cornea(up_r).mean(0) - _cornea(rest_r).mean(0))
    assert abs(ul[2] - ur[2]) < 1e-4 and abs(ul[2]) > 1e-3 and abs(ul[0] + ur[0]) < 1e-4
