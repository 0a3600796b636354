"""deform() against a slow per-joint, per-vertex reference; gradcheck; devices and dtypes."""

import numpy as np
import pytest
import torch

from core.geometry.camera import axis_angle_to_matrix
from core.template import TemplateModel, random_template
from core.template.deform import expression_deltas

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rodrigues_reference(w):
    """(3,) float64 -> (3,3): the textbook formula, one rotation at a time."""
    th = np.linalg.norm(w)
    if th == 0:
        return np.eye(3)
    k = w / th
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx


def rigid_inverse(m):
    """Inverse of a rotation + translation (the stored rest rotations are orthonormal)."""
    inv = np.eye(4)
    inv[:3, :3] = m[:3, :3].T
    inv[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return inv


def side_delta(basis, r, k, i):
    """Delta of controller k at element i: the +1 side for r > 0, the −1 side for r < 0."""
    side = 0 if r[k] >= 0 else 1
    return abs(r[k]) * basis[k, side, i].astype(np.float64)


def deform_reference(t, r, theta, d):
    """One sample. r: (R,), theta: (J,9), d: (N,3); float64 numpy; loops over joints and vertices."""
    rest = {}
    for j in range(t.num_joints):
        m = np.eye(4)
        m[:3, :3] = t.joint_rest[j, :3, :3]
        m[:3, 3] = t.joint_rest[j, :3, 3] + sum(side_delta(t.ctrl_joint_basis, r, k, j) for k in range(len(r)))
        rest[j] = m
    world = {}

    def posed(j):
        if j in world:
            return world[j]
        p = np.eye(4)
        p[:3, :3] = rodrigues_reference(theta[j, :3]) @ np.diag(np.exp(theta[j, 6:9]))
        p[:3, 3] = theta[j, 3:6]
        par = t.joint_parents[j]
        if par < 0:
            world[j] = rest[j] @ p
        else:
            world[j] = posed(par) @ rigid_inverse(rest[par]) @ rest[j] @ p
        return world[j]

    skin = [posed(j) @ rigid_inverse(rest[j]) for j in range(t.num_joints)]
    out = np.zeros((t.num_verts, 3))
    for v in range(t.num_verts):
        x = t.verts[v].astype(np.float64) + sum(side_delta(t.ctrl_basis, r, k, v) for k in range(len(r)))
        acc = np.zeros(3)
        for slot in range(t.skin_idx.shape[1]):
            m = skin[t.skin_idx[v, slot]]
            acc += t.skin_w[v, slot] * (m[:3, :3] @ x + m[:3, 3])
        out[v] = acc + d[v]
    parts = np.zeros((len(t.part_verts), 3))
    for p in range(len(t.part_verts)):
        x = t.part_verts[p].astype(np.float64) + sum(side_delta(t.part_ctrl_basis, r, k, p) for k in range(len(r)))
        m = skin[t.part_joint[p]]
        parts[p] = m[:3, :3] @ x + m[:3, 3]
    return out, np.stack([world[j] for j in range(t.num_joints)]), parts


def random_inputs(t, b, dtype, device, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    r = (torch.rand(b, t.num_controllers, generator=g) * 2 - 1).to(device, dtype)
    theta = (torch.randn(b, t.num_joints, 9, generator=g) * scale * torch.tensor([1, 1, 1, .05, .05, .05, .2, .2, .2])).to(device, dtype)
    d = (torch.randn(b, t.num_verts, 3, generator=g) * 0.001).to(device, dtype)
    return r, theta, d


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deform_matches_reference(device, dtype):
    t = random_template(seed=3, joints=7)
    model = TemplateModel(t, device=device, dtype=dtype)
    r, theta, d = random_inputs(t, 2, dtype, device)
    out = model.deform(r, theta, d)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for i in range(2):
        verts, joints, parts = deform_reference(t, r[i].cpu().double().numpy(), theta[i].cpu().double().numpy(),
                                                d[i].cpu().double().numpy())
        np.testing.assert_allclose(out.verts[i].cpu().double().numpy(), verts, atol=tol)
        np.testing.assert_allclose(out.joints[i].cpu().double().numpy(), joints, atol=tol)
        np.testing.assert_allclose(out.parts[i].cpu().double().numpy(), parts, atol=tol)


def test_rest_pose_is_rest_verts_plus_deltas():
    t = random_template(seed=1)
    model = TemplateModel(t, dtype=torch.float64)
    r = torch.rand(3, t.num_controllers, dtype=torch.float64)
    zero = torch.zeros(3, t.num_joints, 9, dtype=torch.float64)
    expected = model.verts + torch.einsum("br,rnc->bnc", r, torch.as_tensor(t.ctrl_basis[:, 0], dtype=torch.float64))
    torch.testing.assert_close(model.deform(r, zero).verts, expected)
    torch.testing.assert_close(model.deform(r).verts, expected)


def test_expression_deltas_are_one_controller_at_its_bound_at_a_time():
    t = random_template(seed=2)
    model = TemplateModel(t, dtype=torch.float64)
    neutral = 0.3 * torch.rand(1, t.num_controllers, dtype=torch.float64)
    joints = 0.1 * torch.randn(1, t.num_joints, 9, dtype=torch.float64)
    ids = torch.tensor([0, t.num_controllers - 1])
    head, part = expression_deltas(model, neutral, ids, joints)
    rest = model.deform(neutral, joints)
    for k, i in enumerate(ids.tolist()):
        c = neutral.clone()
        c[0, i] = model.ctrl_bounds[i, 1]
        moved = model.deform(c, joints)
        torch.testing.assert_close(head[k], (moved.verts - rest.verts)[0])
        torch.testing.assert_close(part[k], (moved.parts - rest.parts)[0])
    assert expression_deltas(model, neutral, ids)[0].shape == (2, t.num_verts, 3)


def test_root_rotation_rotates_everything_rigidly():
    t = random_template(seed=2)
    model = TemplateModel(t, dtype=torch.float64)
    theta = torch.zeros(1, t.num_joints, 9, dtype=torch.float64)
    theta[0, 0, :3] = torch.tensor([0.3, -0.2, 0.5])
    out = model.deform(torch.zeros(1, t.num_controllers, dtype=torch.float64), theta)
    g = model.joint_rot[0] @ axis_angle_to_matrix(theta[0, 0, :3]) @ model.joint_rot[0].T
    c = model.joint_heads[0]
    torch.testing.assert_close(out.verts[0], (model.verts - c) @ g.T + c)


def test_axis_angle_matches_reference_and_is_smooth_at_zero():
    w = torch.randn(20, 3, dtype=torch.float64)
    w[0] = 0
    w[1] = 1e-6
    got = axis_angle_to_matrix(w)
    for i in range(len(w)):
        np.testing.assert_allclose(got[i].numpy(), rodrigues_reference(w[i].numpy()), atol=1e-12)
    z = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (z,))


def test_gradcheck_float64():
    t = random_template(seed=4, grid=2, joints=5, controllers=3)
    model = TemplateModel(t, dtype=torch.float64)
    r, theta, d = random_inputs(t, 1, torch.float64, "cpu", seed=1)
    r.requires_grad_(); theta.requires_grad_(); d.requires_grad_()

    def f(r, theta, d):
        out = model.deform(r, theta, d)
        return out.verts, out.joints, out.parts

    assert torch.autograd.gradcheck(f, (r, theta, d))


def test_bad_inputs_give_clear_errors():
    t = random_template()
    model = TemplateModel(t)
    with pytest.raises(ValueError, match=r"controllers must have shape \(B, 5\)"):
        model.deform(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="joint_params must have shape"):
        model.deform(torch.zeros(1, 5), torch.zeros(1, t.num_joints, 6))
    with pytest.raises(ValueError, match="float64 on cpu; the template model is torch.float32"):
        model.deform(torch.zeros(1, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="dtype must be"):
        TemplateModel(t, dtype=torch.float16)
