"""Texture files of a fit: albedo.png, normal.png, preview.png and the GLB material."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from PIL import Image

from core.geometry.camera import Cameras

from .extract import TextureMaps, as_uv_mesh, extract_textures
from .preview import preview_image


def result_cameras(arrays: dict, images: list[np.ndarray]) -> list[Cameras]:
    """Batch-1 float32 cameras of a fit result, one per photo.

    arrays: a ``FitResult.arrays`` with ``K`` (V, 3, 3), ``R`` (V, 3, 3),
    ``t`` (V, 3) in each photo's pixels; images: the V photos (H, W, 3).
    """
    K, R, t = (np.asarray(arrays[k], np.float32) for k in ("K", "R", "t"))
    if len(K) != len(images):
        raise ValueError(f"the fit has {len(K)} views but {len(images)} photos were given")
    as_t = lambda a: torch.as_tensor(a)[None]  # noqa: E731
    return [Cameras(as_t(K[i]), as_t(R[i]), as_t(t[i]), int(img.shape[1]), int(img.shape[0]))
            for i, img in enumerate(images)]


def fit_texture_maps(template, arrays: dict, images: list[np.ndarray], size: int = 1024,
                     device="cpu") -> TextureMaps:
    """The UV albedo and detail-normal maps of a fitted head from its photos.

    template: the fitted ``Template``; arrays: ``FitResult.arrays`` (posed
    ``verts`` (N, 3), cameras ``K``, ``R``, ``t``); images: the photos
    (H, W, 3) uint8 RGB in view order; size: map side in pixels.
    """
    verts = np.asarray(arrays["verts"], np.float32)
    return extract_textures(as_uv_mesh(template), verts, result_cameras(arrays, images), images, size=size,
                            device=device)


def write_texture_files(out_dir, template, arrays: dict, images: list[np.ndarray],
                        maps: TextureMaps) -> dict[str, pathlib.Path]:
    """Write ``albedo.png``, ``normal.png`` and ``preview.png`` (photo 0 beside the
    textured head) of a fit's ``maps`` (``fit_texture_maps``); returns {name: path}.
    Use ``maps.to_material()`` for the GLB."""
    out = pathlib.Path(out_dir)
    paths = maps.save(out)
    paths["preview"] = out / "preview.png"
    cam = result_cameras(arrays, images)[0]
    verts = np.asarray(arrays["verts"], np.float32)
    Image.fromarray(preview_image(as_uv_mesh(template), verts, cam, images[0], maps)).save(paths["preview"])
    return paths
