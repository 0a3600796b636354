"""The fit's free variables and how they turn into a posed mesh and cameras.

Controllers are split into identity shape and expression (bounded, projected
back into their bounds after every step). The head pose is a rotation of the
head joint relative to the neck, so in one view it is not the same thing as
the camera rotation. Each view has its own camera: a rotation update on top of
the PnP initialisation, a translation and a log focal length (relative to the
image's long side). With ``shared_focal`` the views share one focal length
(photos from one camera): per-view focals are poorly determined by landmarks
and normals (focal trades against distance), and left free they drift apart.
"""

from __future__ import annotations

import numpy as np
import torch

from core.geometry.camera import Cameras, axis_angle_to_matrix
from core.template.deform import JOINT_PARAM_DIM, TemplateModel

POSE_JOINT_CANDIDATES = ("head", "neck02", "neck01")
# Joints that carry the whole head rigidly (the neck chain up to the head):
# held with the pose and cameras while pins act, so pins sculpt the head
# instead of sliding it.
HEAD_CHAIN_JOINTS = ("neck01", "neck02", "neck03", "head")
# Joint translations are optimised in centimetres so one learning rate suits
# rotations (radians), translations and log-scales alike.
JOINT_TRANSLATION_UNIT = 0.01


def focal_scale(cameras: list[Cameras]) -> np.ndarray:
    """(V,) each view's long side in pixels: focal lengths are shared relative to it."""
    return np.array([float(max(c.width, c.height)) for c in cameras])


def with_shared_focal(cameras: list[Cameras], centre: np.ndarray) -> list[Cameras]:
    """The cameras (batch-1 each) with one focal length relative to image size (the views'
    median), each moved along its line of sight so that ``centre`` (world, (3,)) keeps its
    image position and size. float64."""
    arrays = [c.numpy() for c in cameras]
    rel = np.array([np.sqrt(K[0, 0] * K[1, 1]) for K, _, _ in arrays]) / focal_scale(cameras)
    med = float(np.median(rel))
    out = []
    for c, (K, R, t), r in zip(cameras, arrays, rel):
        k = med / r
        K[:2, :2] *= k
        p = R @ centre
        moved = p + t
        moved[2] *= k  # further away by the focal's factor: same pixel position and size
        out.append(Cameras.from_numpy(K, R, moved - p, c.width, c.height))
    return out


class FitVariables:
    """All optimisable tensors (leaf tensors on one device) for V views."""

    def __init__(self, model: TemplateModel, cameras: list[Cameras], shared_focal: bool = False):
        """cameras: one batch-1 ``Cameras`` a view (the views' image sizes may differ)."""
        t = model.template
        dev, dt = model.device, model.dtype
        self.shared_focal = bool(shared_focal) and len(cameras) > 1
        if self.shared_focal:
            cameras = with_shared_focal(cameras, t.verts.astype(np.float64).mean(0))
        self.model = model
        self.shape_ids = torch.as_tensor(np.flatnonzero(~t.ctrl_is_expression), device=dev)
        self.expr_ids = torch.as_tensor(np.flatnonzero(t.ctrl_is_expression), device=dev)
        default = model.ctrl_default
        self.shape = default[self.shape_ids].clone().requires_grad_(True)
        self.expression = default[self.expr_ids].clone().requires_grad_(True)
        self.pose = torch.zeros(3, device=dev, dtype=dt, requires_grad=True)
        self.pose_joint = next((t.joint_index(n) for n in POSE_JOINT_CANDIDATES if n in t.joint_names), 0)
        self.joints = torch.zeros(model.num_joints, JOINT_PARAM_DIM, device=dev, dtype=dt, requires_grad=True)
        self.offsets = torch.zeros(model.num_verts, 3, device=dev, dtype=dt, requires_grad=True)
        nv = len(cameras)
        Ks, Rs, ts = (np.stack(x) for x in zip(*(c.numpy() for c in cameras)))
        self.cam_rot = torch.zeros(nv, 3, device=dev, dtype=dt, requires_grad=True)
        self.cam_trans = torch.as_tensor(ts, device=dev, dtype=dt).requires_grad_(True)
        scale = focal_scale(cameras)
        rel = np.sqrt(Ks[:, 0, 0] * Ks[:, 1, 1]) / scale
        if self.shared_focal:
            rel = rel[:1]  # equal after with_shared_focal
        self.focal_scale = torch.as_tensor(scale, device=dev, dtype=dt)
        self.cam_log_focal = torch.as_tensor(np.log(rel), device=dev, dtype=dt).requires_grad_(True)
        self.R0 = torch.as_tensor(Rs, device=dev, dtype=dt)
        self.principal = torch.as_tensor(Ks[:, :2, 2], device=dev, dtype=dt)
        self.aspect = torch.as_tensor(Ks[:, 1, 1] / Ks[:, 0, 0], device=dev, dtype=dt)
        self.sizes = [(c.width, c.height) for c in cameras]
        lo, hi = model.ctrl_bounds[:, 0], model.ctrl_bounds[:, 1]
        self._bounds = {"shape": (lo[self.shape_ids], hi[self.shape_ids]),
                        "expression": (lo[self.expr_ids], hi[self.expr_ids])}
        # Large-steps parameterisation of the offsets (set by the vertex stage).
        self.offset_solver = None
        self.head_chain = torch.as_tensor([t.joint_index(n) for n in HEAD_CHAIN_JOINTS if n in t.joint_names],
                                          device=dev, dtype=torch.long)

    # -- groups by schedule variable name ------------------------------------
    def tensors(self, name: str) -> list[torch.Tensor]:
        return {
            "shape": [self.shape],
            "expression": [self.expression],
            "pose": [self.pose],
            "camera": [self.cam_rot, self.cam_trans],
            "focal": [self.cam_log_focal],
            "joints": [self.joints],
            "offsets": [self.offsets],
        }[name]

    def train_only(self, names) -> None:
        """Only the named variables (schedule names) take gradients from now on: a stage's
        backward pass then skips what it does not optimise (the controller basis, the joint
        chain in the vertex stage)."""
        train = {id(x) for name in names for x in self.tensors(name)}
        for x in self.all_tensors():
            x.requires_grad_(id(x) in train)
            if id(x) not in train:
                x.grad = None

    def rig_trained(self) -> bool:
        """Whether a variable that moves the rig (controllers, pose, joints) takes gradients."""
        return any(x.requires_grad for x in (self.shape, self.expression, self.pose, self.joints))

    def all_tensors(self) -> list[torch.Tensor]:
        return [self.shape, self.expression, self.pose, self.joints, self.offsets,
                self.cam_rot, self.cam_trans, self.cam_log_focal]

    def project_bounds(self) -> None:
        with torch.no_grad():
            for name in ("shape", "expression"):
                lo, hi = self._bounds[name]
                value = getattr(self, name)
                value.copy_(torch.maximum(torch.minimum(value, hi), lo))

    def snapshot(self) -> list[torch.Tensor]:
        return [x.detach().clone() for x in self.all_tensors()]

    def restore(self, snap: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for x, s in zip(self.all_tensors(), snap):
                x.copy_(s)

    def head_placement(self) -> list[torch.Tensor]:
        """Copies of what places the head as a whole: pose, cameras, focal lengths and the neck chain's joints."""
        return [x.detach().clone() for x in (self.pose, self.cam_rot, self.cam_trans, self.cam_log_focal,
                                             self.joints[self.head_chain])]

    def hold_head_placement(self, held: list[torch.Tensor]) -> None:
        """Put back a :meth:`head_placement` (after a step) and clear those gradients,
        so that an optimiser's momentum does not carry them on."""
        with torch.no_grad():
            for x, h in zip((self.pose, self.cam_rot, self.cam_trans, self.cam_log_focal), held[:4]):
                x.copy_(h)
                if x.grad is not None:
                    x.grad.zero_()
            self.joints[self.head_chain] = held[4]
            if self.joints.grad is not None:
                self.joints.grad[self.head_chain] = 0

    def set_large_steps(self, solver) -> None:
        """Optimise offsets as u = (I + lam L) d from now on, keeping the current d."""
        if self.offset_solver is not None:
            with torch.no_grad():
                current = self.offset_solver(self.offsets)
                self.offsets.copy_(current)
        self.offset_solver = solver
        with torch.no_grad():
            self.offsets.copy_(solver.to_differential(self.offsets))

    # -- evaluation ---------------------------------------------------------
    def controllers(self, expression_scale: float = 1.0) -> torch.Tensor:
        """(1, R) full controller vector."""
        ctrl = self.model.ctrl_default.clone()
        ctrl = ctrl.index_put((self.shape_ids,), self.shape)
        ctrl = ctrl.index_put((self.expr_ids,), self.expression * expression_scale)
        return ctrl[None]

    def joint_params(self, with_pose: bool = True) -> torch.Tensor:
        """(1, J, 9) joint parameters with the head pose folded in."""
        unit = torch.ones(JOINT_PARAM_DIM, device=self.joints.device, dtype=self.joints.dtype)
        unit[3:6] = JOINT_TRANSLATION_UNIT
        params = self.joints * unit
        if with_pose:
            pose = torch.zeros_like(params).index_put(
                (torch.tensor([self.pose_joint], device=params.device),), torch.cat([self.pose, self.pose.new_zeros(6)])[None]
            )
            params = params + pose
        return params[None]

    def vertex_offsets(self) -> torch.Tensor:
        """(1, N, 3) offsets (through the large-steps solve when it is active)."""
        if self.offset_solver is not None:
            return self.offset_solver(self.offsets)[None]
        return self.offsets[None]

    def camera_record(self, view: int) -> dict:
        """One view's current camera as float32 numpy (K, R, t) plus its image size."""
        K, R, t = (x[view].detach().cpu().numpy().astype(np.float32) for x in self.cameras())
        width, height = self.sizes[view]
        return {"K": K, "R": R, "t": t, "width": int(width), "height": int(height)}

    def cameras(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(K (V,3,3), R (V,3,3), t (V,3)) current cameras."""
        R = axis_angle_to_matrix(self.cam_rot) @ self.R0
        f = torch.exp(self.cam_log_focal) * self.focal_scale
        K = torch.zeros(len(f), 3, 3, device=f.device, dtype=f.dtype)
        K[:, 0, 0] = f / torch.sqrt(self.aspect)
        K[:, 1, 1] = f * torch.sqrt(self.aspect)
        K[:, :2, 2] = self.principal
        K[:, 2, 2] = 1
        return K, R, self.cam_trans
