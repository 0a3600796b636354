"""Texture extraction: photos -> albedo and detail normal maps in UV space.

For every texel of the UV layout: its 3D point on the fitted mesh is
projected into each view and kept where it is the front-most surface (depth
test against a render of the mesh) and faces the camera; views blend with a
weight ``cos(angle)^ANGLE_POWER``. Shading the fitted geometry explains
(low-order SH light fitted against the rendered normals, per view) is divided
out. Texels no view saw are filled by dual-mask Poisson blending with a
guide texture (by default a neutral skin tone taken from the visible
region), and everything outside the islands is padded with the nearest
island colour.
"""

from __future__ import annotations

import io
import pathlib
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.geometry.camera import Cameras
from core.geometry.constants import TEXEL_VISIBILITY_REL_TOL
from core.geometry.normals import vertex_normals
from core.geometry.safe import normalize_clamped
from core.render import Fragments, interpolate, rasterize
from core.render.rasterize import DEFAULT_NEAR

from .detail import detail_normals
from .fill import pad_islands, poisson_fill, soft_mask
from .lighting import MIN_FIT_COS, facing_normal, fit_sh_lighting, linear_to_srgb, relative_shading, srgb_to_linear
from .uv_layout import UVMesh, check_size, rasterize_uv, texel_surface

ANGLE_POWER = 4.0
"""View weight cos(angle)^p: favours the view that sees a texel most frontally."""

MIN_COS = 0.1
"""Texels seen closer to grazing than this cosine are not taken from a view."""

CONFIDENT_COS = 0.4
"""A texel whose blended weight reaches cos^p at this cosine counts fully as observed."""

RASTER_MAX = 1024
"""Depth-test renders and the lighting fit use at most this many pixels on the long side."""

BORDER_PX = 1.0
"""Texels projecting closer than this to the image border are not sampled."""

MIN_OVERLAP_TEXELS = 256
"""Views sharing fewer texels with the reference view keep their colours as they are."""

MAX_VIEW_GAIN = 2.0

KNOWN_SOFT = 0.98
"""Texels whose soft mask reaches this are Dirichlet data for the Poisson fill."""


@dataclass
class TextureMaps:
    """Extracted maps, all S x S, rows top-down (v = 1 at row 0).

    albedo: (S, S, 3) uint8 sRGB, shading removed, holes filled, islands padded.
    normal: (S, S, 3) uint8 tangent-space detail normals, ``n * 0.5 + 0.5``
        (OpenGL convention: +x along +u, +y along +v).
    coverage: (S, S) float32 in [0, 1]: the soft mask, how much of each
        texel's albedo comes from the photos (the rest is fill).
    observed: (S, S, 3) uint8 photo colours before shading removal, zero
        where no view saw the texel (the "before" of the albedo).
    island: (S, S) bool texels inside the UV islands (the hard seam mask).
    lighting: (V, 9, 3) float32 SH light fitted per view (linear light,
        world-space normals; zeros when shading removal was off).
    seconds: time per phase.
    """

    albedo: np.ndarray
    normal: np.ndarray
    coverage: np.ndarray
    observed: np.ndarray
    island: np.ndarray
    lighting: np.ndarray
    seconds: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.albedo.shape[0])

    def albedo_png(self) -> bytes:
        return self._png("albedo")

    def normal_png(self) -> bytes:
        return self._png("normal")

    def _png(self, name: str) -> bytes:
        """The map ``name`` as PNG bytes, encoded once: the files and the GLB's material carry the
        same bytes (each 1024² encode is ~60 ms). The maps are not changed after they are made."""
        encoded = self.__dict__.setdefault("_encoded", {})
        if name not in encoded:
            encoded[name] = _png(getattr(self, name))
        return encoded[name]

    def to_material(self, name: str = "likeness_skin"):
        """A glTF material (``core.export.gltf.Material``) with these maps."""
        from core.export.gltf import Material

        return Material(name=name, base_color_png=self.albedo_png(), normal_png=self.normal_png())

    def save(self, out_dir) -> dict[str, pathlib.Path]:
        """Write ``albedo.png`` and ``normal.png`` into out_dir; returns {name: path}."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"albedo": out / "albedo.png", "normal": out / "normal.png"}
        paths["albedo"].write_bytes(self.albedo_png())
        paths["normal"].write_bytes(self.normal_png())
        return paths


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def as_uv_mesh(template) -> UVMesh:
    """A ``UVMesh`` as is, or the UV layout of a ``core.template.Template``."""
    return template if isinstance(template, UVMesh) else UVMesh.from_template(template)


def split_views(cameras, images) -> list[Cameras]:
    """One batch-1 ``Cameras`` per image, checked against the image sizes.

    cameras: a ``Cameras`` batch of V (one image size) or a sequence of V
    batch-1 ``Cameras``; images: V arrays (H, W, 3).
    """
    views = [cameras[i] for i in range(cameras.batch_size)] if isinstance(cameras, Cameras) else list(cameras)
    if len(views) != len(images):
        raise ValueError(f"got {len(views)} cameras for {len(images)} images; give one camera per photo")
    for i, (cam, img) in enumerate(zip(views, images)):
        if not isinstance(cam, Cameras) or cam.batch_size != 1:
            raise ValueError(f"view {i}: expected a batch-1 Cameras")
        shape = np.shape(img)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"view {i}: image must be (H, W, 3) RGB, got shape {shape}")
        if (cam.width, cam.height) != (shape[1], shape[0]):
            raise ValueError(
                f"view {i}: camera is {cam.width}x{cam.height} but the image is {shape[1]}x{shape[0]}; "
                "scale K with the image"
            )
    return views


def _image_tensor(image: np.ndarray, device) -> torch.Tensor:
    """(H, W, 3) uint8 or float [0, 1] -> (H, W, 3) float32 linear light."""
    arr = np.asarray(image)
    x = torch.as_tensor(np.array(arr, copy=True), device=device)
    x = x.float() / 255.0 if arr.dtype == np.uint8 else x.float()
    return srgb_to_linear(x)


def sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup. image: (H, W, C) float; uv: (P, 2) pixel coordinates
    (pixel i spans [i, i+1)). Returns (P, C)."""
    H, W = image.shape[:2]
    grid = torch.stack([uv[:, 0] / W * 2.0 - 1.0, uv[:, 1] / H * 2.0 - 1.0], -1).to(image.dtype)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid[None, None], mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0, :, 0].T


@torch.no_grad()
def fit_view_lighting(verts: torch.Tensor, tris: torch.Tensor, camera: Cameras, image_linear: torch.Tensor,
                      fragments: Fragments | None = None, light_verts: torch.Tensor | None = None) -> torch.Tensor:
    """SH light of one photo, fitted against the rendered normals of the fitted mesh.

    verts: (N, 3) float32; tris: (T, 3) int64; camera: batch-1 Cameras at
    the (possibly reduced) resolution of image_linear (H, W, 3) float32
    linear light; fragments: a rasterisation of verts by camera, if at hand;
    light_verts: (N,) bool vertices whose skin the fit may use (None: all).
    Returns light (9, 3) for world-space normals.
    """
    frags = fragments if fragments is not None else rasterize(verts[None], tris, camera)
    n_world = normalize_clamped(interpolate(vertex_normals(verts[None], tris), tris, frags))[0]  # (H, W, 3)
    n_cam = n_world @ camera.R[0].T
    use = frags.mask[0] & (-n_cam[..., 2] > MIN_FIT_COS)
    if light_verts is not None:
        inside = interpolate(light_verts.to(verts.dtype)[None, :, None], tris, frags)[0, ..., 0]
        use &= inside > 0.999
    if int(use.sum()) < 64:
        raise ValueError("the fitted mesh covers too few pixels of the photo to estimate its lighting")
    return fit_sh_lighting(image_linear[use], n_world[use], (-n_cam[..., 2])[use])


def visible_texels(points: torch.Tensor, camera: Cameras, fragments: Fragments) -> torch.Tensor:
    """Whether each point is the front-most surface in its pixel's 3 x 3 neighbourhood.

    points: (P, 3) float world positions; camera: batch-1 Cameras that made
    ``fragments``. Returns (P,) bool. The neighbourhood keeps bilinear
    lookups next to an occluding edge (a nose in front of a cheek) from
    picking up the occluder's colour.
    """
    _, H, W = fragments.face_id.shape
    uv, depth = camera.project(points[None])
    uv, depth = uv[0], depth[0]
    depth_map = fragments.depth[0].detach()
    front = torch.where(fragments.mask[0], depth_map, torch.full_like(depth_map, float("inf")))
    nearest = -F.max_pool2d(-front[None, None], 3, stride=1, padding=1)[0, 0]
    col = torch.floor(uv[:, 0]).nan_to_num(-1).clamp(-1, W).long()
    row = torch.floor(uv[:, 1]).nan_to_num(-1).clamp(-1, H).long()
    on_screen = (col >= 0) & (col < W) & (row >= 0) & (row < H) & (depth >= DEFAULT_NEAR)
    flat = row.clamp(0, H - 1) * W + col.clamp(0, W - 1)
    covered = fragments.mask[0].reshape(-1)[flat]
    return on_screen & covered & (depth <= nearest.reshape(-1)[flat] * (1.0 + TEXEL_VISIBILITY_REL_TOL))


def match_view_gains(colours: list[torch.Tensor], weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-view colour gains that make views agree where they overlap.

    Each photo has its own exposure and fitted light scale; views are scaled
    per channel to match the view with the largest total weight over the
    texels both see. colours: V tensors (P, 3); weights: V tensors (P,).
    Returns V gains (3,) (1 for the reference and views that barely overlap it).
    """
    ref = int(torch.stack([w.sum() for w in weights]).argmax())
    gains = []
    for c, w in zip(colours, weights):
        both = weights[ref] * w
        if int((both > 0).sum()) < MIN_OVERLAP_TEXELS:
            gains.append(torch.ones(3, dtype=c.dtype, device=c.device))
            continue
        num = (both[:, None] * colours[ref]).sum(0)
        den = (both[:, None] * c).sum(0).clamp(min=1e-12)
        gains.append((num / den).clamp(1.0 / MAX_VIEW_GAIN, MAX_VIEW_GAIN))
    return gains


def _resize_linear(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    arr = image.cpu().numpy()
    small = cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA)
    return torch.as_tensor(small, device=image.device)


@torch.no_grad()
def extract_textures(
    template,
    verts,
    cameras,
    images,
    size: int = 1024,
    *,
    remove_shading: bool = True,
    guide: np.ndarray | None = None,
    upscale: float = 1.0,
    device=None,
) -> TextureMaps:
    """Albedo and detail normal maps of the fitted mesh from its photos.

    template: ``core.template.Template`` or ``UVMesh``; verts: (N, 3) float
    posed vertices (what the photos show); cameras: ``Cameras`` (batch V) or
    V batch-1 ``Cameras``, matching the image sizes; images: V arrays
    (H, W, 3) uint8 sRGB (or float in [0, 1]); size: map size S.
    remove_shading: divide out the SH light fitted per view.
    guide: (S, S, 3) uint8 template texture for the hole fill (default: a
    constant neutral skin tone, the median of the confidently seen albedo).
    upscale: Lanczos upscaling factor applied to each photo before sampling
    (1 = off).
    """
    t0 = time.perf_counter()
    size = check_size(size)
    mesh = as_uv_mesh(template)
    if len(images) == 0:
        raise ValueError("need at least one photo")
    if not upscale >= 1.0:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    views = split_views(cameras, images)
    if device is None:
        device = verts.device if torch.is_tensor(verts) else "cpu"
    dev = torch.device(device)
    v = torch.as_tensor(verts.detach() if torch.is_tensor(verts) else np.asarray(verts)).to(dev, torch.float32)
    if v.shape != (mesh.num_verts, 3):
        raise ValueError(f"verts must be ({mesh.num_verts}, 3) for this template, got {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("verts contain NaN or infinity")
    tris = torch.as_tensor(mesh.tris, dtype=torch.int64, device=dev)
    light_verts = None if mesh.light_verts is None else torch.as_tensor(mesh.light_verts, device=dev)
    seconds = {}

    texels = rasterize_uv(torch.as_tensor(mesh.tri_uvs, device=dev), size)
    points, normals = texel_surface(v, tris, texels)
    seconds["uv_raster"] = time.perf_counter() - t0

    lights = np.zeros((len(views), 9, 3), np.float32)
    weights, raws, albedos = [], [], []
    t1 = time.perf_counter()
    for i, (cam, image) in enumerate(zip(views, images)):
        cam = cam.to(device=dev, dtype=torch.float32)
        img = _image_tensor(image, dev)
        scale = min(1.0, RASTER_MAX / max(cam.width, cam.height))
        small = cam.scaled(scale)
        frags = rasterize(v[None], tris, small)
        visible = visible_texels(points, small, frags)
        centre = -(cam.R[0].T @ cam.t[0])
        cos = (normals * normalize_clamped(centre - points)).sum(1)
        if remove_shading:
            small_img = img if scale == 1.0 else _resize_linear(img, small.width, small.height)
            light = fit_view_lighting(v, tris, small, small_img, frags, light_verts)
            lights[i] = light.cpu().numpy()
        if upscale > 1.0:
            img = torch.as_tensor(cv2.resize(img.cpu().numpy(), None, fx=upscale, fy=upscale,
                                             interpolation=cv2.INTER_LANCZOS4), device=dev).clamp(0, 1)
            cam = cam.scaled(upscale)
        uv, _ = cam.project(points[None])
        uv = uv[0]
        inside = ((uv[:, 0] >= BORDER_PX) & (uv[:, 0] <= cam.width - BORDER_PX)
                  & (uv[:, 1] >= BORDER_PX) & (uv[:, 1] <= cam.height - BORDER_PX))
        take = visible & inside & (cos > MIN_COS)
        weights.append(torch.where(take, cos.clamp(min=0) ** ANGLE_POWER, torch.zeros_like(cos)))
        raws.append(sample_image(img, uv))
        albedos.append(raws[-1] / relative_shading(normals, light, facing_normal(cam.R[0])) if remove_shading
                       else raws[-1])
    gains = match_view_gains(albedos, weights)
    wsum = torch.stack(weights).sum(0)
    acc_raw = sum(w[:, None] * c for w, c in zip(weights, raws))
    acc_albedo = sum(w[:, None] * c * g for w, c, g in zip(weights, albedos, gains))
    seconds["project"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    seen = wsum > 0
    denom = wsum.clamp(min=1e-12)[:, None]
    raw = torch.where(seen[:, None], linear_to_srgb(acc_raw / denom), torch.zeros_like(acc_raw))
    albedo = torch.where(seen[:, None], linear_to_srgb(acc_albedo / denom), torch.zeros_like(acc_albedo))
    # The cosine a single view would need for this weight, relative to CONFIDENT_COS.
    confidence = (wsum.clamp(min=0) ** (1.0 / ANGLE_POWER) / CONFIDENT_COS).clamp(max=1.0)

    island = texels.mask().cpu().numpy()
    observed_map = texels.scatter(raw).cpu().numpy()
    albedo_map = texels.scatter(albedo).cpu().numpy()
    seen_map = texels.scatter(seen[:, None].float())[..., 0].cpu().numpy() > 0
    conf_map = texels.scatter(confidence[:, None])[..., 0].cpu().numpy()
    soft = soft_mask(seen_map, conf_map, island)
    known = soft >= KNOWN_SOFT
    if guide is None:
        if not known.any():
            raise ValueError("no texel was seen frontally enough by any view; check the cameras and the fitted mesh")
        tone = np.median(albedo_map[known], axis=0)
        guide_map = np.broadcast_to(tone, albedo_map.shape).astype(np.float32)
    else:
        guide = np.asarray(guide)
        if guide.shape != (size, size, 3):
            raise ValueError(f"guide texture must be ({size}, {size}, 3), got {guide.shape}")
        guide_map = guide.astype(np.float32) / (255.0 if guide.dtype == np.uint8 else 1.0)
    filled = poisson_fill(albedo_map, known, island, guide_map)
    final = soft[..., None] * albedo_map + (1.0 - soft[..., None]) * filled
    seconds["fill"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    normal = detail_normals(final, island)
    seconds["normal"] = time.perf_counter() - t3
    final = pad_islands(final, island)
    normal = pad_islands(normal, island)
    seconds["total"] = time.perf_counter() - t0
    to8 = lambda x: np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)  # noqa: E731
    return TextureMaps(
        albedo=to8(final),
        normal=to8(normal * 0.5 + 0.5),
        coverage=soft,
        observed=to8(observed_map),
        island=island,
        lighting=lights,
        seconds=seconds,
    )
