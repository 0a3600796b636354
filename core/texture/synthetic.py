"""Synthetic UV-mapped meshes, cameras and textures with known answers (tests, benchmark)."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.geometry.camera import Cameras

from .uv_layout import UVMesh


def uv_sphere(radius: float = 0.1, rings: int = 32, segments: int = 64) -> tuple[np.ndarray, UVMesh]:
    """A latitude-longitude sphere with one UV seam at the back (+Y).

    u runs around (u = 0.5 faces -Y, the front), v from the bottom pole (0)
    to the top (1); triangles wind counter-clockwise seen from outside, and
    counter-clockwise in UV, so tangent x bitangent points outward.
    Returns verts (N, 3) float32 and the UV mesh.
    """
    i, j = np.meshgrid(np.arange(rings + 1), np.arange(segments), indexing="ij")
    theta = math.pi * i / rings
    phi = 2.0 * math.pi * j / segments
    verts = np.stack([-np.sin(theta) * np.sin(phi), np.sin(theta) * np.cos(phi), np.cos(theta)], -1) * radius
    verts = verts.reshape(-1, 3).astype(np.float32)
    ii, jj = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    vid = lambda r, c: r * segments + c % segments  # noqa: E731
    a, b, c, d = vid(ii, jj), vid(ii, jj + 1), vid(ii + 1, jj + 1), vid(ii + 1, jj)
    uv = lambda r, c: np.stack([c / segments, 1.0 - r / rings], -1)  # noqa: E731
    ua, ub, uc, ud = uv(ii, jj), uv(ii, jj + 1), uv(ii + 1, jj + 1), uv(ii + 1, jj)
    tris = np.concatenate([np.stack([d, c, b], 1), np.stack([d, b, a], 1)])
    tri_uvs = np.concatenate([np.stack([ud, uc, ub], 1), np.stack([ud, ub, ua], 1)]).astype(np.float32)
    return verts, UVMesh(tris.astype(np.int64), tri_uvs, len(verts))


def orbit_camera(yaw_deg: float, pitch_deg: float, distance: float, width: int, height: int,
                 focal: float | None = None, target=(0.0, 0.0, 0.0)) -> Cameras:
    """A batch-1 camera on a sphere around ``target`` looking at it.

    yaw 0, pitch 0 sits at -Y (in front of a face looking toward -Y); positive
    yaw moves toward +X, positive pitch upward. focal in pixels (default:
    a 50 mm-equivalent horizontal field). float32.
    """
    f = focal if focal is not None else width * 50.0 / 36.0
    return Cameras.orbit(target, distance, yaw_deg, pitch_deg, f, int(width), int(height), dtype=torch.float32)


def pattern_texture(size: int, detail: float = 0.0, seed: int = 0) -> np.ndarray:
    """A smooth, seamless (periodic in u) colour pattern, (S, S, 3) uint8.

    detail: amplitude of added fine random speckle (0 = smooth), in [0, 1] units.
    """
    c = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(c, 1.0 - c, indexing="xy")
    r = 0.55 + 0.20 * np.sin(2 * np.pi * 3 * u) * np.cos(np.pi * 2 * v)
    g = 0.45 + 0.15 * np.cos(2 * np.pi * 2 * u + 1.0) + 0.10 * np.sin(2 * np.pi * 3 * v)
    b = 0.40 + 0.15 * np.sin(2 * np.pi * (u + v) * 2)
    img = np.stack([r, g, b], -1)
    if detail > 0:
        img = img + detail * np.random.default_rng(seed).normal(size=img.shape[:2])[..., None]
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def skin_texture(size: int, seed: int = 0, spots: int = 24) -> np.ndarray:
    """A skin-like map: one tone, fine high-frequency variation and dark spots, (S, S, 3) uint8.

    Unlike ``pattern_texture`` its colour is not a low-order function of the
    normal on a sphere, so lighting and albedo can be told apart.
    """
    rng = np.random.default_rng(seed)
    c = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(c, 1.0 - c, indexing="xy")
    tone = np.array([0.72, 0.55, 0.46])
    fine = 0.04 * np.sin(2 * np.pi * 24 * u) * np.sin(2 * np.pi * 16 * v)
    img = tone * (1.0 + fine[..., None])
    centres = rng.random((spots, 2))
    d2 = ((u[..., None] - centres[:, 0]) ** 2 + (v[..., None] - centres[:, 1]) ** 2).min(-1, initial=np.inf)
    spots = np.exp(-d2 / (2 * 0.012 ** 2))
    img = img * (1.0 - 0.45 * spots[..., None])
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
