"""The template's UV layout as a rasterisable mesh, and texels on the surface.

Texture images follow Blender and glTF: texel (row, col) of an S x S map
covers ``u in [col, col+1) / S`` and ``v in [S-row-1, S-row) / S``; row 0 is
the top of the image (v = 1). UV-space rasterisation treats ``(u S, (1-v) S)``
as screen positions with constant depth (an orthographic camera), through
the core renderer's face-id rasteriser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.geometry.normals import vertex_normals
from core.geometry.safe import normalize_clamped
from core.render.rasterize import rasterize_projected

MAX_TEXTURE_SIZE = 8192


@dataclass(frozen=True)
class UVMesh:
    """Triangles with per-corner UVs: what texture extraction needs of a template.

    tris: (T, 3) int64 vertex ids; tri_uvs: (T, 3, 2) float32 UV of each
    triangle corner (v up, Blender convention); num_verts: N; light_verts:
    (N,) bool vertices whose skin the lighting fit may use (None: all).
    """

    tris: np.ndarray
    tri_uvs: np.ndarray
    num_verts: int
    light_verts: np.ndarray | None = None

    def __post_init__(self) -> None:
        tris, uvs = np.asarray(self.tris), np.asarray(self.tri_uvs)
        if tris.ndim != 2 or tris.shape[1] != 3 or not np.issubdtype(tris.dtype, np.integer):
            raise ValueError(f"tris must be (T, 3) integers, got {tris.shape} {tris.dtype}")
        if uvs.shape != tris.shape + (2,):
            raise ValueError(f"tri_uvs must be (T, 3, 2) matching tris {tris.shape}, got {uvs.shape}")
        if tris.size and (tris.min() < 0 or tris.max() >= self.num_verts):
            raise ValueError(f"tris index vertices outside [0, {self.num_verts})")
        if not np.isfinite(uvs).all():
            raise ValueError("tri_uvs contain NaN or infinity")
        if self.light_verts is not None and np.shape(self.light_verts) != (self.num_verts,):
            raise ValueError(f"light_verts must be ({self.num_verts},) bool, got {np.shape(self.light_verts)}")

    @classmethod
    def from_template(cls, template) -> "UVMesh":
        """Per-triangle corner UVs of a ``core.template.Template`` (fan-triangulated polygons)."""
        t = template
        counts = np.diff(t.poly_start)
        width = int(counts.max())
        # Padded polygon corner vertex ids, -1 beyond each polygon's corner count.
        col = np.arange(len(t.poly_verts)) - np.repeat(t.poly_start[:-1], counts)
        padded = np.full((len(counts), width), -1, dtype=np.int64)
        padded[np.repeat(np.arange(len(counts)), counts), col] = t.poly_verts
        cand = padded[t.tri_poly]  # (T, M)
        match = cand[:, None, :] == np.asarray(t.tris)[:, :, None]  # (T, 3, M)
        if not match.any(2).all():
            raise ValueError("template triangles use vertices that are not corners of their polygon "
                             "(tri_poly mismatch)")
        corner = t.poly_start[t.tri_poly][:, None] + match.argmax(2)
        return cls(np.asarray(t.tris, dtype=np.int64), np.asarray(t.uvs, np.float32)[corner], int(t.num_verts),
                   light_verts=skin_light_vertices(t))


def skin_light_vertices(template) -> np.ndarray | None:
    """(N,) bool: the face's bare skin (``face_mask`` less lips and eye rings), where one
    albedo and smooth light are a fair model; None when the template has no face mask."""
    regions = template.regions
    if "face_mask" not in regions:
        return None
    keep = np.zeros(template.num_verts, bool)
    keep[regions["face_mask"]] = True
    for name in ("lips", "eye_l_ring", "eye_r_ring", "mouth_ring"):
        if name in regions:
            keep[regions[name]] = False
    return keep


@dataclass(frozen=True)
class UVTexels:
    """Texels covered by the UV layout of an S x S map.

    index: (P,) int64 flat texel ids (row * S + col); tri: (P,) int64 the
    triangle covering each texel centre; bary: (P, 3) float32 barycentrics in
    that triangle (affine in UV); size: S.
    """

    index: torch.Tensor
    tri: torch.Tensor
    bary: torch.Tensor
    size: int

    def mask(self) -> torch.Tensor:
        """(S, S) bool: the hard seam mask (texels inside a UV island)."""
        m = torch.zeros(self.size * self.size, dtype=torch.bool, device=self.index.device)
        m[self.index] = True
        return m.view(self.size, self.size)

    def scatter(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """values: (P, C) -> (S, S, C) map, ``fill`` outside the islands."""
        out = torch.full((self.size * self.size, values.shape[1]), fill, dtype=values.dtype, device=values.device)
        out[self.index] = values
        return out.view(self.size, self.size, values.shape[1])


def check_size(size: int) -> int:
    size = int(size)
    if size < 8 or size > MAX_TEXTURE_SIZE:
        raise ValueError(f"texture size must be in [8, {MAX_TEXTURE_SIZE}], got {size}")
    return size


def rasterize_uv(tri_uvs: torch.Tensor, size: int) -> UVTexels:
    """Rasterise the UV layout: which triangle covers each texel centre.

    tri_uvs: (T, 3, 2) float UV corners (v up). Overlapping islands: the
    lower triangle id wins. Returns the covered texels.
    """
    size = check_size(size)
    if tri_uvs.ndim != 3 or tri_uvs.shape[1:] != (3, 2):
        raise ValueError(f"tri_uvs must be (T, 3, 2), got {tuple(tri_uvs.shape)}")
    T = tri_uvs.shape[0]
    uv = tri_uvs.reshape(-1, 2).to(torch.float64)
    screen = torch.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size, torch.ones_like(uv[:, 0])], 1)[None]
    faces = torch.arange(3 * T, device=tri_uvs.device).view(T, 3)
    frags = rasterize_projected(screen, faces, size, size, backend="torch", near=0.5)
    return UVTexels(frags.pixel_index, frags.pixel_face, frags.pixel_bary.to(torch.float32), size)


def texel_surface(verts: torch.Tensor, tris: torch.Tensor, texels: UVTexels) -> tuple[torch.Tensor, torch.Tensor]:
    """Each texel's 3D point and smooth unit normal on the mesh.

    verts: (N, 3) float world positions; tris: (T, 3) int64.
    Returns points (P, 3) and normals (P, 3), dtype of ``verts``.
    """
    corners = tris[texels.tri]  # (P, 3)
    bary = texels.bary.to(verts.dtype)[..., None]
    points = (verts[corners] * bary).sum(1)
    vn = vertex_normals(verts[None], tris)[0]
    normals = normalize_clamped((vn[corners] * bary).sum(1))
    return points, normals


def triangle_tangents(
    verts: torch.Tensor, tris: torch.Tensor, tri_uvs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-triangle tangent dP/du and bitangent dP/dv (unnormalised).

    verts: (N, 3) float; tris: (T, 3) int64; tri_uvs: (T, 3, 2) float.
    Returns (T, 3), (T, 3); zero for triangles degenerate in UV.
    """
    p = verts[tris]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    uv = tri_uvs.to(verts.dtype)
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    inv = torch.where(det.abs() > 1e-12, 1.0 / torch.where(det.abs() > 1e-12, det, torch.ones_like(det)),
                      torch.zeros_like(det))[:, None]
    tangent = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * inv
    bitangent = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * inv
    return tangent, bitangent
