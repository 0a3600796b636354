"""What the fitter renders: normal maps, depth, coverage, surface-point
projections and visibility."""

from __future__ import annotations

import torch

from core.geometry.camera import Cameras

from .interpolate import interpolate
from core.geometry.constants import POINT_VISIBILITY_REL_TOL
from core.geometry.normals import vertex_normals
from core.geometry.safe import normalize_clamped

from .rasterize import DEFAULT_NEAR, Fragments, broadcast_batch, check_mesh, rasterize


def render_normals(
    verts: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    backend: str | None = None,
    fragments: Fragments | None = None,
    cull_back: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space normal map (OpenCV axes; surfaces facing the camera have n_z < 0).

    verts: (B, V, 3) float world positions; faces: (F, 3) int64.
    Returns normals (B, H, W, 3) unit length (zero on background) and mask
    (B, H, W) float (1 covered, 0 background). Pass ``fragments`` to reuse a
    rasterisation of the same verts and cameras; ``cull_back`` as in ``rasterize``.
    """
    mesh = verts
    verts, cameras = _prepare(verts, faces, cameras)
    frags = fragments if fragments is not None else rasterize(verts, faces, cameras, backend, cull_back=cull_back)
    # One mesh seen by several cameras: its normals once (batch 1), turned into each camera's frame.
    n_world = vertex_normals(mesh if mesh.shape[0] == 1 else verts, faces)
    n_cam = torch.matmul(n_world, cameras.R.transpose(1, 2))
    normals = normalize_clamped(interpolate(n_cam, faces, frags))
    return normals, frags.mask.to(verts.dtype)


def render_depth(
    verts: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    backend: str | None = None,
    fragments: Fragments | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth map: camera z in metres (B, H, W), zero on background, and mask (B, H, W) float.

    verts: (B, V, 3) float world positions; faces: (F, 3) int64.
    """
    verts, cameras = _prepare(verts, faces, cameras)
    frags = fragments if fragments is not None else rasterize(verts, faces, cameras, backend)
    return frags.depth, frags.mask.to(verts.dtype)


def surface_points(verts: torch.Tensor, faces: torch.Tensor, tri_ids: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Points on the surface given by face ids and barycentrics (landmark embeddings).

    verts: (B, V, 3) float; faces: (F, 3) int64; tri_ids: (L,) int64;
    bary: (L, 3) float. Returns (B, L, 3).
    """
    check_mesh(verts, faces)
    if tri_ids.ndim != 1 or bary.shape != (tri_ids.shape[0], 3):
        raise ValueError(f"expected tri_ids (L,) and bary (L, 3); got {tuple(tri_ids.shape)}, {tuple(bary.shape)}")
    if tri_ids.numel() and (int(tri_ids.min()) < 0 or int(tri_ids.max()) >= faces.shape[0]):
        raise ValueError(f"tri_ids must index faces in [0, {faces.shape[0]})")
    corners = verts[:, faces[tri_ids]]  # (B, L, 3, 3)
    return (bary.to(verts.dtype)[None, :, :, None] * corners).sum(2)


def project_surface_points(
    verts: torch.Tensor, faces: torch.Tensor, tri_ids: torch.Tensor, bary: torch.Tensor, cameras: Cameras
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions of embedded surface points.

    verts: (B, V, 3) float; faces: (F, 3) int64; tri_ids: (L,) int64;
    bary: (L, 3) float. Returns uv (B, L, 2) pixels and depth (B, L).
    """
    verts, cameras = _prepare(verts, faces, cameras)
    return cameras.project(surface_points(verts, faces, tri_ids, bary))


def visible_points(
    points: torch.Tensor,
    cameras: Cameras,
    fragments: Fragments,
    rel_tol: float = POINT_VISIBILITY_REL_TOL,
) -> torch.Tensor:
    """Whether each point is the front-most surface at its pixel.

    points: (B, L, 3) float world positions (e.g. ``surface_points`` or the
    vertices themselves); fragments: a rasterisation of the occluding meshes
    by the same cameras. Returns (B, L) bool: False off-screen, behind the
    camera, on background pixels, or behind a nearer surface.
    """
    points, cameras = broadcast_batch(points, cameras)
    with torch.no_grad():
        uv, depth = cameras.project(points)
        B, H, W = fragments.face_id.shape
        col = torch.floor(uv[..., 0]).nan_to_num(-1).clamp(-1, W).long()
        row = torch.floor(uv[..., 1]).nan_to_num(-1).clamp(-1, H).long()
        on_screen = (col >= 0) & (col < W) & (row >= 0) & (row < H) & (depth >= DEFAULT_NEAR)
        flat = torch.arange(B, device=points.device)[:, None] * (H * W) + row.clamp(0, H - 1) * W + col.clamp(0, W - 1)
        covered = fragments.face_id.reshape(-1)[flat] >= 0
        front = fragments.depth.detach().reshape(-1)[flat]
        return on_screen & covered & (depth <= front + rel_tol * depth)


def _prepare(verts: torch.Tensor, faces: torch.Tensor, cameras: Cameras) -> tuple[torch.Tensor, Cameras]:
    check_mesh(verts, faces)
    if verts.dtype != cameras.dtype or verts.device != cameras.device:
        raise ValueError(
            f"verts ({verts.dtype}, {verts.device}) and cameras ({cameras.dtype}, {cameras.device}) must match"
        )
    return broadcast_batch(verts, cameras)
