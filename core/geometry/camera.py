"""The core's one camera: batched OpenCV pinholes in torch, with projection, look-at and rotations.

``bridge.conventions`` owns the conventions (world frame, OpenCV camera axes,
pixel footprint ``[i, i+1)`` with centre ``i + 0.5``, ``MIN_DEPTH``) and the
numpy projection the add-on uses; ``Cameras.project`` is the same projection
in torch, with gradients. Render, fit, bundle adjustment, texture, benches
and the embedding tool all take ``Cameras``: a batch of views sharing one
image size, or a list of batch-1 ``Cameras`` when the views' sizes differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bridge.conventions import MIN_DEPTH, WORLD_UP

from .safe import via_float64


@dataclass(frozen=True)
class Cameras:
    """A batch of pinhole cameras sharing one image size.

    K: (B, 3, 3) intrinsics in pixels; R: (B, 3, 3) world-to-camera rotation;
    t: (B, 3) translation (``x_cam = R x_world + t``); width, height in pixels.
    All tensors share a device and float dtype.
    """

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        K, R, t = self.K, self.R, self.t
        if K.ndim != 3 or K.shape[1:] != (3, 3):
            raise ValueError(f"K must be (B, 3, 3), got {tuple(K.shape)}")
        if R.shape != K.shape or t.shape != (K.shape[0], 3):
            raise ValueError(
                f"expected R (B, 3, 3) and t (B, 3) with B={K.shape[0]}; got {tuple(R.shape)}, {tuple(t.shape)}"
            )
        if not (K.dtype == R.dtype == t.dtype) or not K.dtype.is_floating_point:
            raise ValueError(f"K, R, t must share one float dtype; got {K.dtype}, {R.dtype}, {t.dtype}")
        if not (K.device == R.device == t.device):
            raise ValueError(f"K, R, t must be on one device; got {K.device}, {R.device}, {t.device}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_numpy(cls, K, R, t, width: int, height: int, dtype: torch.dtype = torch.float64,
                   device=None) -> "Cameras":
        """Cameras from arrays: K, R (3, 3) or (B, 3, 3), t (3,) or (B, 3) (one view when unbatched)."""
        K, R, t = (torch.as_tensor(np.asarray(x), dtype=dtype, device=device) for x in (K, R, t))
        if K.ndim == 2:
            K, R, t = K[None], R[None], t.reshape(1, 3)
        return cls(K, R, t, int(width), int(height))

    @classmethod
    def look_at(cls, eye, target, focal: float, width: int, height: int, up=WORLD_UP,
                dtype: torch.dtype = torch.float64, device=None) -> "Cameras":
        """A batch-1 centred camera at ``eye`` (3,) looking at ``target`` (3,), image up along ``up``.

        focal in pixels. The rotation is built in float64 numpy (fixture and tool cameras, set
        up once), then cast to ``dtype``.
        """
        eye = np.asarray(eye, dtype=np.float64)
        forward = np.asarray(target, dtype=np.float64) - eye
        norm = np.linalg.norm(forward)
        if norm == 0:
            raise ValueError("look_at: eye and target coincide")
        forward /= norm
        right = np.cross(forward, np.asarray(up, dtype=np.float64))
        if np.linalg.norm(right) < 1e-9:
            raise ValueError("look_at: viewing direction is parallel to up")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R = np.stack([right, down, forward])
        K = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
        return cls.from_numpy(K, R, -R @ eye, width, height, dtype=dtype, device=device)

    @classmethod
    def orbit(cls, target, distance: float, yaw_deg: float, pitch_deg: float, focal: float, width: int,
              height: int, dtype: torch.dtype = torch.float64, device=None) -> "Cameras":
        """One camera on a sphere around ``target`` (3,) looking at it.

        yaw 0, pitch 0 looks at the face from the front (camera on -Y); positive yaw moves
        the camera toward +X (the subject's left side), positive pitch moves it up.
        """
        yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
        direction = np.array([math.sin(yaw) * math.cos(pitch), -math.cos(yaw) * math.cos(pitch), math.sin(pitch)])
        eye = np.asarray(target, dtype=np.float64) + distance * direction
        return cls.look_at(eye, target, focal, width, height, dtype=dtype, device=device)

    # -- batch --------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.K.shape[0]

    @property
    def device(self) -> torch.device:
        return self.K.device

    @property
    def dtype(self) -> torch.dtype:
        return self.K.dtype

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(
            self.K.to(device=device, dtype=dtype),
            self.R.to(device=device, dtype=dtype),
            self.t.to(device=device, dtype=dtype),
            self.width,
            self.height,
        )

    @classmethod
    def cat(cls, cameras: "list[Cameras]") -> "Cameras":
        """One batch from several (same image size); a single one comes back as it is."""
        if len(cameras) == 1:
            return cameras[0]
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cameras to join must share one image size, got {sorted(sizes)}")
        return cls(torch.cat([c.K for c in cameras]), torch.cat([c.R for c in cameras]),
                   torch.cat([c.t for c in cameras]), cameras[0].width, cameras[0].height)

    def __getitem__(self, index) -> "Cameras":
        """A sub-batch (index: int, slice or index tensor); keeps the batch dimension."""
        if isinstance(index, int):
            index = [index]
        return Cameras(self.K[index], self.R[index], self.t[index], self.width, self.height)

    def scaled(self, scale: float) -> "Cameras":
        """The cameras of the image resized by ``scale``: focal and principal point scale, the size
        rounds (at least one pixel)."""
        K = self.K.clone()
        K[:, :2] *= scale
        return Cameras(K, self.R, self.t, max(1, round(self.width * scale)), max(1, round(self.height * scale)))

    def numpy(self, view: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One view's (K (3, 3), R (3, 3), t (3,)) as float64 numpy copies (for PnP, COLMAP, bridge)."""
        return tuple(np.array(x[view].detach().cpu().double().numpy(), copy=True) for x in (self.K, self.R, self.t))

    # -- geometry -----------------------------------------------------------------------------------
    def centers(self) -> torch.Tensor:
        """(B, 3) camera centres in world coordinates (``-Rᵀ t``)."""
        return -(self.R.transpose(1, 2) @ self.t[..., None])[..., 0]

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B, N, 3) -> camera-space points (B, N, 3) (OpenCV axes).

        A batch of 1 on either side broadcasts against the other.
        """
        _check_points(points)
        return torch.matmul(points, self.R.transpose(1, 2)) + self.t[:, None, :]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (B, N, 3) -> (uv (B, N, 2) pixels, depth (B, N) camera z).

        Points closer than ``MIN_DEPTH`` project as if at ``MIN_DEPTH`` (finite
        values and gradients, meaningless positions): check ``depth > 0``.
        """
        return project_camera_points(self.to_camera(points), self.K)

    def rays(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, N, 2) -> (B, N, 3) unit world-space directions of the rays through them
        (all starting at ``centers()``)."""
        if pixels.ndim != 3 or pixels.shape[-1] != 2:
            raise ValueError(f"pixels must be (B, N, 2), got {tuple(pixels.shape)}")
        homo = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)
        cam_dirs = torch.linalg.solve(self.K[:, None], homo[..., None])[..., 0]
        dirs = cam_dirs @ self.R  # Rᵀ applied to each row
        return dirs / torch.linalg.norm(dirs, dim=-1, keepdim=True)


def project_camera_points(cam: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space points (B, N, 3) and K (B, 3, 3) -> (uv (B, N, 2), depth (B, N))."""
    depth = cam[..., 2]
    z = depth.clamp(min=MIN_DEPTH)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    u = fx * cam[..., 0] / z + cx
    v = fy * cam[..., 1] / z + cy
    return torch.stack([u, v], dim=-1), depth


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, smooth at zero (Taylor terms) so gradients exist there.

    axis_angle: (..., 3) float radians. Returns (..., 3, 3) rotation matrices.
    """
    w = axis_angle
    t2 = (w * w).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    th = torch.sqrt(t2s)
    a = torch.where(small, 1 - t2 / 6, via_float64(torch.sin, th) / th)
    b = torch.where(small, 0.5 - t2 / 24, (1 - via_float64(torch.cos, th)) / t2s)
    k = _skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3), angle in [0, π].

    Near π, where the skew part vanishes, the axis comes from the symmetric part
    ``(R + Rᵀ) / 2 = cos θ I + (1 - cos θ) k kᵀ`` (its largest column). No gradient at 0
    (``acos``): for reading rotations, not for optimising through.
    """
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    skew = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = torch.sin(angle)
    small = sin.abs() < 1e-6
    # Away from π: w = θ / (2 sin θ) · skew; near 0 the factor tends to 1/2.
    safe_sin = torch.where(small, torch.ones_like(sin), sin)
    factor = torch.where(small, torch.full_like(angle, 0.5), angle / (2 * safe_sin))
    w = factor[..., None] * skew
    near_pi = small & (cos < 0)
    if near_pi.any():
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        sym = (R + R.transpose(-1, -2)) / 2 - cos[..., None, None] * eye  # (1 - cos θ) k kᵀ
        col = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)
        axis = torch.gather(sym, -1, col[..., None, None].expand(*col.shape, 3, 1))[..., 0]
        axis = axis / torch.linalg.norm(axis, dim=-1, keepdim=True)
        # The sign of the axis is free at π; take the one the skew part (tiny, not zero) agrees with.
        sign = torch.where((axis * skew).sum(-1) < 0, -1.0, 1.0).to(R.dtype)
        w = torch.where(near_pi[..., None], (sign * angle)[..., None] * axis, w)
    return w


def _skew(w: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices ``[w]×``."""
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*w.shape[:-1], 3, 3)


def _check_points(points: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
