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


def write_texture_files(out_dir, template, arrays: dict, images: list[np.ndarray], size: int = 1024,
                        device="cpu") -> tuple[dict[str, pathlib.Path], TextureMaps]:
    """Extract the maps of a fitted head and write ``albedo.png``, ``normal.png``, ``preview.png``.

    template: the fitted ``Template``; arrays: ``FitResult.arrays`` (posed
    ``verts`` (N, 3), cameras ``K``, ``R``, ``t``); images: the photos
    (H, W, 3) uint8 RGB in view order. Returns ({name: path}, maps); use
    ``maps.to_material()`` for the GLB.
    """
    out = pathlib.Path(out_dir)
    cams = result_cameras(arrays, images)
    mesh = as_uv_mesh(template)
    verts = np.asarray(arrays["verts"], np.float32)
    maps = extract_textures(mesh, verts, cams, images, size=size, device=device)
    paths = maps.save(out)
    paths["preview"] = out / "preview.png"
    Image.fromarray(preview_image(mesh, verts, cams[0], images[0], maps)).save(paths["preview"])
    return paths, maps
