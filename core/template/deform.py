"""Differentiable, batched deformation of the rigged template.

V(r, θ, d) = LBS(V̄ + Δ(r), T(θ̄ + Φ(r) + θ), W) + d

- Δ(r) = Σ_k max(r_k,0) Δ_k⁺ + max(−r_k,0) Δ_k⁻: controller deltas, applied
  in the rest pose (two-sided like MakeHuman's decr/incr target pairs).
- Φ(r), likewise: joint head offsets, so rest joints follow identity.
- θ: per-joint local parameters, ``joint_params (B, J, 9)`` =
  [axis-angle rotation (3) | translation in metres (3) | log scale (3)],
  all expressed in the joint's own rest frame. The posed local transform is
  L_j · Tr(t) · Rot(ω) · Scale(exp(σ)), where L_j is the rest transform of
  joint j relative to its parent; θ = 0 is the rest pose.
- Skinning matrix of joint j: G_j · G_rest_j⁻¹ (world posed × inverse rest).

Rest joint orientations do not change with controllers (only head positions
do); this keeps the bone axes the artist made.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from core.geometry.camera import axis_angle_to_matrix

from .model import Template

JOINT_PARAM_DIM = 9


@dataclasses.dataclass
class DeformResult:
    """Output of :func:`deform`.

    verts: (B, N, 3) posed skin vertices.
    joints: (B, J, 4, 4) posed world transforms of the joints.
    rest_joints: (B, J, 4, 4) rest world transforms after Φ(r) (rest frame the skin binds to).
    parts: (B, P, 3) posed rigid-part vertices (eyeballs, teeth, tongue); None when not asked for.
    """

    verts: torch.Tensor
    joints: torch.Tensor
    rest_joints: torch.Tensor
    parts: torch.Tensor | None


class TemplateModel:
    """Torch tensors of a :class:`Template` on one device/dtype, ready for :func:`deform`.

    Holds V̄ (N,3), Δ as a dense (2R, N*3) matrix, Φ (2R, J*3), rest rotations,
    sparse skinning (N,K) index/weight, and the joint hierarchy split into
    depth levels for vectorised forward kinematics.
    """

    def __init__(self, template: Template, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.template = template
        self.dtype = dtype
        # Resolve "cuda" to "cuda:0" so device checks compare equal to tensors' devices.
        self.device = torch.empty(0, device=device).device
        f = dict(device=self.device, dtype=dtype)
        i = dict(device=self.device, dtype=torch.long)
        t = template
        self.num_verts, self.num_joints, self.num_controllers = t.num_verts, t.num_joints, t.num_controllers
        self.verts = torch.as_tensor(t.verts, **f)
        self.ctrl_basis = torch.as_tensor(t.ctrl_basis.reshape(2 * t.num_controllers, -1), **f)
        self.ctrl_joint_basis = torch.as_tensor(t.ctrl_joint_basis.reshape(2 * t.num_controllers, -1), **f)
        self.joint_rot = torch.as_tensor(t.joint_rest[:, :3, :3], **f)
        self.joint_heads = torch.as_tensor(t.joint_rest[:, :3, 3], **f)
        self.skin_idx = torch.as_tensor(t.skin_idx, **i)
        self.skin_w = torch.as_tensor(t.skin_w, **f)
        self.skin_dense = torch.zeros(t.num_verts, t.num_joints, **f)  # (N, J) W
        self.skin_dense.scatter_add_(1, self.skin_idx, self.skin_w)
        self.part_verts = torch.as_tensor(t.part_verts, **f)
        self.part_ctrl_basis = torch.as_tensor(t.part_ctrl_basis.reshape(2 * t.num_controllers, -1), **f)
        self.part_joint = torch.as_tensor(t.part_joint, **i)
        self.ctrl_bounds = torch.as_tensor(t.ctrl_bounds, **f)
        self.ctrl_default = torch.as_tensor(t.ctrl_default, **f)
        self.tris = torch.as_tensor(t.tris, **i)
        self.parents = torch.as_tensor(t.joint_parents, **i)
        self.levels, self.level_parent_pos, self.level_inverse = _levels(t.joint_parents, self.device)

    def default_controllers(self, batch: int = 1) -> torch.Tensor:
        """(batch, R) the neutral controller values."""
        return self.ctrl_default.expand(batch, -1).clone()

    def deform(self, controllers: torch.Tensor, joint_params: torch.Tensor | None = None,
               vertex_offsets: torch.Tensor | None = None, parts: bool = True) -> DeformResult:
        return deform(self, controllers, joint_params, vertex_offsets, parts)


def _levels(parents: np.ndarray, device: torch.device):
    """Split joints by depth. Parents of level l all lie in level l-1.

    Returns (levels: list of (n_l,) long joint ids, parent_pos: list of (n_l,)
    long positions of each parent inside the previous level (None for level 0),
    inverse: (J,) long position of each joint in the concatenated level order).
    """
    depth = np.zeros(len(parents), dtype=np.int64)
    for j in range(len(parents)):  # parents come first, so one pass suffices
        depth[j] = 0 if parents[j] < 0 else depth[parents[j]] + 1
    levels, parent_pos = [], []
    pos_in_level = np.zeros(len(parents), dtype=np.int64)
    for d in range(int(depth.max()) + 1):
        ids = np.flatnonzero(depth == d)
        pos_in_level[ids] = np.arange(len(ids))
        levels.append(torch.as_tensor(ids, device=device))
        parent_pos.append(None if d == 0 else torch.as_tensor(pos_in_level[parents[ids]], device=device))
    order = np.concatenate([lv.cpu().numpy() for lv in levels])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return levels, parent_pos, torch.as_tensor(inverse, device=device)


def _homogeneous(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """rot: (..., 3, 3), trans: (..., 3) -> (..., 4, 4)."""
    top = torch.cat([rot, trans[..., None]], -1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)


def joint_local_transforms(joint_params: torch.Tensor) -> torch.Tensor:
    """joint_params: (B, J, 9) -> (B, J, 4, 4) = Tr(t) · Rot(ω) · Scale(exp(σ))."""
    rot = axis_angle_to_matrix(joint_params[..., 0:3])
    scale = torch.exp(joint_params[..., 6:9])
    return _homogeneous(rot * scale[..., None, :], joint_params[..., 3:6])


def deform(model: TemplateModel, controllers: torch.Tensor, joint_params: torch.Tensor | None = None,
           vertex_offsets: torch.Tensor | None = None, parts: bool = True) -> DeformResult:
    """Pose the template.

    controllers: (B, R) controller values r (not clamped; bound them in the fitter).
    joint_params: (B, J, 9) or None (rest) — see the module docstring.
    vertex_offsets: (B, N, 3) or None — d, added after skinning.
    parts: pose the rigid parts too (the fit's losses see only the skin: it passes False).
    All float tensors share ``model.dtype`` and ``model.device``.
    Returns a :class:`DeformResult`.
    """
    _check(model, controllers, (None, model.num_controllers), "controllers")
    b = controllers.shape[0]
    n, j = model.num_verts, model.num_joints
    if joint_params is not None:
        _check(model, joint_params, (b, j, JOINT_PARAM_DIM), "joint_params")
    if vertex_offsets is not None:
        _check(model, vertex_offsets, (b, n, 3), "vertex_offsets")

    sides = controller_sides(controllers)  # (B,2R)
    rest_verts = model.verts + _by_row(sides, model.ctrl_basis).view(b, n, 3)  # (B,N,3)
    heads = model.joint_heads + _by_row(sides, model.ctrl_joint_basis).view(b, j, 3)  # (B,J,3)
    rot = model.joint_rot.expand(b, j, 3, 3)
    rest = _homogeneous(rot, heads)  # (B,J,4,4) rest world frames
    rest_inv = _homogeneous(rot.transpose(-1, -2), -(rot.transpose(-1, -2) @ heads[..., None])[..., 0])

    posed = _forward_kinematics(model, rest, rest_inv, joint_params)
    skin = _matmul(posed, rest_inv)  # (B,J,4,4)

    # Blend the 3x4 skinning matrices per vertex, then apply once. With tens of
    # joints a dense (N, J) weight matmul beats gathering K matrices per vertex.
    mats = skin[:, :, :3, :].reshape(b, j, 12)
    blend = (model.skin_dense @ mats).view(b, n, 3, 4)  # (B,N,3,4)
    verts = _apply_affine(blend, rest_verts)
    if vertex_offsets is not None:
        verts = verts + vertex_offsets

    posed_parts = None
    if parts:
        part_rest = model.part_verts + _by_row(sides, model.part_ctrl_basis).view(b, -1, 3)
        posed_parts = _apply_affine(mats[:, model.part_joint].view(b, -1, 3, 4), part_rest)
    return DeformResult(verts=verts, joints=posed, rest_joints=rest, parts=posed_parts)


@torch.no_grad()
def expression_deltas(model: TemplateModel, neutral: torch.Tensor, expr_ids: torch.Tensor,
                      joint_params: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What each expression controller at its upper bound adds to a neutral face (its shape key).

    neutral: (1, R) controllers; expr_ids: (E,) int64 controller ids; joint_params: (1, J, 9)
    or None (rest), held for every expression. Returns head deltas (E, N, 3) and part
    deltas (E, P, 3), without gradients.
    """
    n = len(expr_ids)
    c = neutral.expand(n, -1).clone()
    c[torch.arange(n), expr_ids] = model.ctrl_bounds[expr_ids, 1]
    moved = deform(model, c, None if joint_params is None else joint_params.expand(n, -1, -1))
    rest = deform(model, neutral, joint_params)
    return moved.verts - rest.verts, moved.parts - rest.parts


def _apply_affine(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """m: (B, M, 3, 4), x: (B, M, 3) -> (B, M, 3). Elementwise: tiny batched matmuls are slow on CPU."""
    return (m[..., :3] * x[..., None, :]).sum(-1) + m[..., 3]


def _by_row(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(B, K) @ (K, M), one row at a time. A matrix product rounds a row differently depending on how
    many rows come with it (the BLAS kernels block them), forward and backward; row by row, a head in
    a batch gets the numbers it gets alone, so many people fitted in one optimisation follow their
    solo fits bit for bit (``core/fit/people.py``)."""
    return torch.stack([row @ basis for row in x.unbind(0)])


def controller_sides(controllers: torch.Tensor) -> torch.Tensor:
    """(B, R) -> (B, 2R) = [max(r_0,0), max(−r_0,0), max(r_1,0), ...], matching the (R, 2, ...) bases.

    Written with |r| so that at r = 0 the gradient is the mean of both sides'
    slopes (torch's d|r|/dr = 0 there), not a one-sided or doubled one.
    """
    a = controllers.abs()
    return torch.stack([(a + controllers) * 0.5, (a - controllers) * 0.5], -1).flatten(1)


def _forward_kinematics(model: TemplateModel, rest: torch.Tensor, rest_inv: torch.Tensor,
                        joint_params: torch.Tensor | None) -> torch.Tensor:
    """rest, rest_inv: (B, J, 4, 4) -> posed world transforms (B, J, 4, 4), one product per depth level."""
    if joint_params is None:
        return rest
    pose = joint_local_transforms(joint_params)  # (B,J,4,4)
    # L_j · P_j for all joints at once, with L_j = G_rest_parent⁻¹ G_rest_j (the root keeps G_rest_root).
    parent_inv = rest_inv[:, model.parents.clamp(min=0)]
    is_root = (model.parents < 0)[None, :, None, None]
    local = torch.where(is_root, rest, _matmul(parent_inv, rest))
    local_pose = _matmul(local, pose)
    out = [local_pose[:, model.levels[0]]]
    for level, ppos in zip(model.levels[1:], model.level_parent_pos[1:]):
        out.append(_matmul(out[-1][:, ppos], local_pose[:, level]))
    return torch.cat(out, 1)[:, model.level_inverse]


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 4, 4) @ (..., 4, 4) as a broadcast sum: many tiny matrices are faster this way than bmm on CPU."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def _check(model: TemplateModel, x: torch.Tensor, shape: tuple, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != len(shape) or any(w is not None and s != w for s, w in zip(x.shape, shape)):
        want = "(" + ", ".join("B" if w is None else str(w) for w in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if x.dtype != model.dtype or x.device != model.device:
        raise ValueError(f"{name} is {x.dtype} on {x.device}; the template model is {model.dtype} on {model.device}")
