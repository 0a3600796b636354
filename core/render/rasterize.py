"""Rasterisation: face id per pixel without gradients, then barycentrics and
depth with gradients (the hard-rasteriser split of pytorch3d and nvdiffrast).

Gradients reach the vertices through the barycentrics of each pixel's
winning face; visibility changes (which face wins) carry no gradient.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch

from bridge.conventions import PIXEL_CENTER_OFFSET
from core.geometry.camera import Cameras

from . import _raster_pytorch3d, _raster_torch

DEFAULT_NEAR = 1e-3
"""Metres: triangles with a vertex closer to the camera than this are not drawn."""

_SAFE_AREA = 1e-12

BACKENDS = ("torch", "pytorch3d")


def default_backend() -> str:
    """``"pytorch3d"`` when importable, else the built-in ``"torch"``."""
    return "pytorch3d" if _raster_pytorch3d.AVAILABLE else "torch"


@dataclass(frozen=True)
class Fragments:
    """What a rasterisation produced.

    face_id: (B, H, W) int64, -1 where no surface.
    bary: (B, H, W, 3) float, perspective-correct barycentrics of the winning
        face (zero on background); differentiable w.r.t. vertices.
    depth: (B, H, W) float, camera z of the surface (zero on background);
        differentiable.
    pixel_index: (P,) int64 flat indices into B*H*W of covered pixels.
    pixel_face: (P,) int64 their face ids.
    pixel_bary: (P, 3) float their barycentrics (what ``bary`` scatters).
    """

    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    pixel_index: torch.Tensor
    pixel_face: torch.Tensor
    pixel_bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool coverage."""
        return self.face_id >= 0


def check_mesh(verts: torch.Tensor, faces: torch.Tensor) -> None:
    """Readable errors for malformed meshes. verts: (B, V, 3) float; faces: (F, 3) int64."""
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
    if not verts.dtype.is_floating_point:
        raise ValueError(f"verts must be a float tensor, got {verts.dtype}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype != torch.int64:
        raise ValueError(f"faces must be (F, 3) int64, got {tuple(faces.shape)} {faces.dtype}")
    if faces.device != verts.device:
        raise ValueError(f"faces on {faces.device} but verts on {verts.device}")
    if not _faces_in_range(faces, verts.shape[1]):
        raise ValueError(f"faces index vertices outside [0, {verts.shape[1]})")


# Face tensors whose range was read, by id: (a weak reference to the tensor, its version, the vertex
# count). The range check reads the device (a host synchronisation on a GPU); a fit renders the same
# faces several times an iteration, so each is read once until it changes in place.
_FACES_CHECKED: dict[int, tuple[weakref.ref, int, int]] = {}
_FACES_CHECKED_MAX = 64
_faces_lock = threading.Lock()


def _faces_in_range(faces: torch.Tensor, num_verts: int) -> bool:
    """Whether every id in ``faces`` lies in [0, num_verts); read from the device once per tensor
    and version."""
    key = id(faces)
    with _faces_lock:
        seen = _FACES_CHECKED.get(key)
    if seen is not None and seen[0]() is faces and seen[1] == faces._version and seen[2] == num_verts:
        return True
    ok = faces.numel() == 0 or (int(faces.min()) >= 0 and int(faces.max()) < num_verts)
    if ok:
        with _faces_lock:
            if len(_FACES_CHECKED) >= _FACES_CHECKED_MAX:
                _FACES_CHECKED.clear()
            _FACES_CHECKED[key] = (weakref.ref(faces), faces._version, num_verts)
    return ok


def broadcast_batch(verts: torch.Tensor, cameras: Cameras) -> tuple[torch.Tensor, Cameras]:
    """Match batch sizes: a batch of 1 (mesh or camera) repeats to the other's size."""
    bv, bc = verts.shape[0], cameras.batch_size
    if bv == bc:
        return verts, cameras
    if bv == 1:
        return verts.expand(bc, -1, -1), cameras
    if bc == 1:
        idx = torch.zeros(bv, dtype=torch.int64, device=cameras.device)
        return verts, cameras[idx]
    raise ValueError(f"batch sizes differ: {bv} meshes, {bc} cameras (one of them may be 1)")


def rasterize(
    verts: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    backend: str | None = None,
    near: float = DEFAULT_NEAR,
    cull_back: bool = False,
) -> Fragments:
    """Rasterise meshes seen by cameras; nearest surface wins.

    verts: (B, V, 3) float world positions (B or cameras' batch may be 1).
    faces: (F, 3) int64, shared by the batch. Back faces are drawn unless ``cull_back``
    (for outward-wound meshes: less work, and what shows through a hole is left empty).
    backend: "torch" (built-in), "pytorch3d", or None for ``default_backend()``.
    """
    check_mesh(verts, faces)
    verts, cameras = broadcast_batch(verts, cameras)
    uv, depth = cameras.project(verts)
    uvz = torch.cat([uv, depth[..., None]], dim=-1)
    return rasterize_projected(uvz, faces, cameras.height, cameras.width, backend, near, cull_back)


def rasterize_projected(uvz: torch.Tensor, faces: torch.Tensor, height: int, width: int,
                        backend: str | None = None, near: float = DEFAULT_NEAR, cull_back: bool = False) -> Fragments:
    """Rasterise vertices already in screen space; nearest depth wins.

    uvz: (B, V, 3) float pixel u, v (centres at +0.5) and depth of each vertex
    (any projection: ``rasterize`` passes a camera's, the UV layout an
    orthographic one); faces: (F, 3) int64; backend and ``cull_back`` as in ``rasterize``.
    """
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "pytorch3d" and not _raster_pytorch3d.AVAILABLE:
        raise ValueError("backend 'pytorch3d' requested but pytorch3d is not installed; use backend='torch'")
    raster = _raster_torch if backend == "torch" else _raster_pytorch3d
    face_id = raster.rasterize_face_ids(uvz.detach(), faces, height, width, near, cull_back)
    return fragments_from_face_ids(face_id, uvz, faces)


def fragments_from_face_ids(face_id: torch.Tensor, uvz: torch.Tensor, faces: torch.Tensor) -> Fragments:
    """Differentiable barycentrics and depth for given face ids.

    face_id: (B, H, W) int64 (-1 empty); uvz: (B, V, 3) float projected
    vertices (pixel u, v, camera depth), with gradients; faces: (F, 3) int64.
    """
    B, H, W = face_id.shape
    V = uvz.shape[1]
    flat = face_id.reshape(-1)
    pixel_index = (flat >= 0).nonzero().squeeze(1)
    pixel_face = flat.index_select(0, pixel_index)
    batch = torch.div(pixel_index, H * W, rounding_mode="floor")
    rem = pixel_index - batch * (H * W)
    row = torch.div(rem, W, rounding_mode="floor")
    col = rem - row * W
    # index_select on flat tensors: much faster than advanced indexing, forward and backward.
    corner = (faces.index_select(0, pixel_face) + (batch * V)[:, None]).t()  # (3, P)
    points = uvz.reshape(B * V, 3)
    px = col.to(uvz.dtype) + PIXEL_CENTER_OFFSET
    py = row.to(uvz.dtype) + PIXEL_CENTER_OFFSET
    p = [points.index_select(0, corner[k]) for k in range(3)]  # 3 x (P, 3)
    dx = [pk[:, 0] - px for pk in p]
    dy = [pk[:, 1] - py for pk in p]
    # twice the signed sub-area opposite each vertex
    edge = [dx[i] * dy[j] - dx[j] * dy[i] for i, j in ((1, 2), (2, 0), (0, 1))]
    area2 = edge[0] + edge[1] + edge[2]
    area2 = torch.where(area2.abs() > _SAFE_AREA, area2, torch.full_like(area2, _SAFE_AREA))
    # Perspective correction: screen barycentrics divided by depth, renormalised.
    q = [edge[k] / (area2 * p[k][:, 2].clamp(min=DEFAULT_NEAR * 1e-3)) for k in range(3)]
    s = q[0] + q[1] + q[2]
    s = torch.where(s.abs() > _SAFE_AREA, s, torch.full_like(s, _SAFE_AREA))
    pixel_bary = torch.stack(q, 1) / s[:, None]
    pixel_depth = 1.0 / s
    bary = torch.zeros(B * H * W, 3, dtype=uvz.dtype, device=uvz.device).index_copy(0, pixel_index, pixel_bary)
    depth = torch.zeros(B * H * W, dtype=uvz.dtype, device=uvz.device).index_copy(0, pixel_index, pixel_depth)
    return Fragments(
        face_id=face_id,
        bary=bary.view(B, H, W, 3),
        depth=depth.view(B, H, W),
        pixel_index=pixel_index,
        pixel_face=pixel_face,
        pixel_bary=pixel_bary,
    )
