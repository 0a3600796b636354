"""Batched OpenCV pinhole cameras with differentiable projection, and one view's camera in numpy.

``bridge.conventions`` owns the conventions (world frame, OpenCV camera axes,
pixel footprint ``[i, i+1)`` with centre ``i + 0.5``, ``MIN_DEPTH``); this
module mirrors ``bridge.conventions.project_points_np`` in torch, with
gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bridge.conventions import MIN_DEPTH


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

    def __getitem__(self, index) -> "Cameras":
        """A sub-batch (index: int, slice or index tensor); keeps the batch dimension."""
        if isinstance(index, int):
            index = [index]
        return Cameras(self.K[index], self.R[index], self.t[index], self.width, self.height)

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


@dataclass
class ViewCamera:
    """One view's camera in numpy, OpenCV convention as ``Cameras``: what PnP and the
    bundle adjustment produce and the fit starts from."""

    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3) world-to-camera
    t: np.ndarray  # (3,)
    width: int
    height: int


def project_camera_points(cam: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space points (B, N, 3) and K (B, 3, 3) -> (uv (B, N, 2), depth (B, N))."""
    depth = cam[..., 2]
    z = depth.clamp(min=MIN_DEPTH)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    u = fx * cam[..., 0] / z + cx
    v = fy * cam[..., 1] / z + cy
    return torch.stack([u, v], dim=-1), depth


def _check_points(points: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
