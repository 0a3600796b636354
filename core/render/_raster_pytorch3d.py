"""Face-id rasteriser backed by pytorch3d (used when pytorch3d is importable).

Only visibility comes from pytorch3d; barycentrics and depth are recomputed
with gradients by ``core.render.rasterize`` exactly as for the built-in
backend, so both backends differ at most in which face wins a pixel.
"""

from __future__ import annotations

import importlib.util

import torch

from ._raster_torch import back_facing

AVAILABLE = importlib.util.find_spec("pytorch3d") is not None


@torch.no_grad()
def rasterize_face_ids(uvz: torch.Tensor, faces: torch.Tensor, height: int, width: int, near: float,
                       cull_back: bool = False) -> torch.Tensor:
    """Same contract as ``core.render._raster_torch.rasterize_face_ids``.

    uvz: (B, V, 3) pixel u, v and camera depth; faces: (F, 3) int64.
    Returns face_id (B, H, W) int64, -1 where empty.
    """
    from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
    from pytorch3d.structures import Meshes

    B = uvz.shape[0]
    uvz = uvz.float()
    # pytorch3d NDC: +x left, +y up, the shorter image side spans [-1, 1];
    # column j's centre (u = j + 0.5) sits at x = r (1 - 2u / W).
    rx = width / height if width > height else 1.0
    ry = height / width if height > width else 1.0
    ndc = torch.stack(
        [rx * (1.0 - 2.0 * uvz[..., 0] / width), ry * (1.0 - 2.0 * uvz[..., 1] / height), uvz[..., 2]], dim=-1
    )
    # Drop triangles crossing the near plane (and, with cull_back, those seen from behind), as the
    # built-in backend does: per batch item, before pytorch3d sees them.
    corners = uvz[:, faces]  # (B, F, 3, 3)
    e1, e2 = corners[:, :, 1, :2] - corners[:, :, 0, :2], corners[:, :, 2, :2] - corners[:, :, 0, :2]
    area2 = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
    front = ~back_facing(area2) if cull_back else torch.ones_like(area2, dtype=torch.bool)
    keep = [((corners[b, :, :, 2].amin(1) >= near) & front[b]).nonzero().squeeze(1) for b in range(B)]
    meshes = Meshes(verts=list(ndc), faces=[faces[k] for k in keep])
    pix_to_face, _, _, _ = rasterize_meshes(
        meshes,
        image_size=(height, width),
        blur_radius=0.0,
        faces_per_pixel=1,
        perspective_correct=False,
        cull_backfaces=False,
    )
    packed = pix_to_face[..., 0]
    # Packed ids index the concatenation of each mesh's kept faces.
    original = torch.cat(keep)[packed.clamp(min=0)]
    return torch.where(packed >= 0, original, torch.full_like(packed, -1))
