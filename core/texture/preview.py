"""Software preview of the textured head: torch rasteriser + UV lookup +
tangent-space normal map + SH light (no bpy in the core)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.geometry.camera import Cameras
from core.geometry.normals import vertex_normals
from core.geometry.safe import normalize_clamped
from core.render import rasterize

from .lighting import facing_normal, linear_to_srgb, relative_shading, sh_basis, srgb_to_linear
from .uv_layout import UVMesh, triangle_tangents

PREVIEW_MAX = 768
"""The preview is drawn at most this many pixels on its long side (per panel)."""

BACKGROUND = (0.32, 0.32, 0.34)


def studio_light(camera: Cameras, key: float = 0.8) -> torch.Tensor:
    """A soft light for previews: ambient plus a key from above-left of the camera.

    camera: batch-1 Cameras. Returns light (9, 3) (world-space SH, white).
    """
    R = camera.R[0].to(torch.float64)
    # Camera axes in world: x right, y down, z forward; the key comes from up-left, toward the camera.
    direction = normalize_clamped(R.T @ torch.tensor([-0.5, -0.7, -1.0], dtype=torch.float64, device=R.device))
    light = torch.zeros(9, 3, dtype=torch.float64, device=R.device)
    y00 = float(sh_basis(torch.zeros(1, 3, dtype=torch.float64))[0, 0])
    y1 = float(sh_basis(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))[0, 2])
    # Relative shading 1 + key (n . d): ambient 1, order-1 basis entries 1..3 are c1 (y, z, x).
    light[0] = 1.0 / y00
    light[1:4] = key * torch.stack([direction[1], direction[2], direction[0]])[:, None] / y1
    return light.to(camera.dtype)


def _sample_map(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """image: (S, S, C) float; uv: (P, 2) texture coordinates (v up). Returns (P, C)."""
    grid = torch.stack([uv[:, 0] * 2.0 - 1.0, (1.0 - uv[:, 1]) * 2.0 - 1.0], -1).to(image.dtype)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid[None, None], mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0, :, 0].T


@torch.no_grad()
def render_textured(
    mesh: UVMesh,
    verts: torch.Tensor,
    camera: Cameras,
    albedo: np.ndarray,
    normal: np.ndarray | None = None,
    light: torch.Tensor | None = None,
    background=BACKGROUND,
) -> tuple[np.ndarray, np.ndarray]:
    """Render the textured mesh.

    verts: (N, 3) float world positions; camera: batch-1 Cameras; albedo:
    (S, S, 3) uint8 sRGB; normal: (S, S, 3) uint8 tangent-space map or None;
    light: (9, 3) SH light or None for unlit (albedo only); shading is
    relative to a surface facing the camera (see ``core.texture.lighting``). Returns image (H, W, 3) uint8 and
    coverage (H, W) bool.
    """
    dev, dt = camera.device, camera.dtype
    v = torch.as_tensor(verts, device=dev, dtype=dt)
    tris = torch.as_tensor(mesh.tris, dtype=torch.int64, device=dev)
    tri_uvs = torch.as_tensor(mesh.tri_uvs, device=dev, dtype=dt)
    frags = rasterize(v[None], tris, camera)
    face, bary = frags.pixel_face, frags.pixel_bary
    uv = (tri_uvs[face] * bary[..., None]).sum(1)
    colour = srgb_to_linear(_sample_map(torch.as_tensor(albedo, device=dev).to(dt) / 255.0, uv))
    if light is not None:
        vn = vertex_normals(v[None], tris)[0]
        n = normalize_clamped((vn[tris[face]] * bary[..., None]).sum(1))
        if normal is not None:
            tn = _sample_map(torch.as_tensor(normal, device=dev).to(dt) / 255.0, uv) * 2.0 - 1.0
            tangent, bitangent = triangle_tangents(v, tris, tri_uvs)
            T = normalize_clamped(tangent[face] - (tangent[face] * n).sum(1, keepdim=True) * n)
            sign = torch.where((torch.linalg.cross(n, T) * bitangent[face]).sum(1, keepdim=True) < 0, -1.0, 1.0)
            Bt = sign * torch.linalg.cross(n, T)
            n = normalize_clamped(tn[:, 0:1] * T + tn[:, 1:2] * Bt + tn[:, 2:3] * n)
        light = torch.as_tensor(light, device=dev, dtype=dt)
        colour = colour * relative_shading(n, light, facing_normal(camera.R[0]), floor=0.0)
    H, W = camera.height, camera.width
    out = torch.tensor(background, device=dev, dtype=dt).repeat(H * W, 1)
    out[frags.pixel_index] = linear_to_srgb(colour)
    image = np.round(out.view(H, W, 3).cpu().numpy() * 255.0).astype(np.uint8)
    return image, frags.mask[0].cpu().numpy()


def preview_image(mesh: UVMesh, verts, camera: Cameras, photo: np.ndarray, maps, view: int = 0) -> np.ndarray:
    """The photo and the textured head side by side, lit by the light fitted to that photo.

    verts: (N, 3) posed vertices; camera: batch-1 Cameras of the photo;
    photo: (H, W, 3) uint8; maps: ``TextureMaps``. Returns (h, 2 w, 3)
    uint8, each panel at most ``PREVIEW_MAX`` on its long side.
    """
    h, w = photo.shape[:2]
    s = min(1.0, PREVIEW_MAX / max(h, w))
    cam = camera.scaled(s)
    light = torch.as_tensor(maps.lighting[view])
    if not light.abs().sum() > 0:
        light = studio_light(cam)
    render, _ = render_textured(mesh, torch.as_tensor(verts), cam, maps.albedo, maps.normal, light)
    small = np.asarray(Image.fromarray(photo).resize((cam.width, cam.height), Image.LANCZOS))
    return np.concatenate([small, render], axis=1)
