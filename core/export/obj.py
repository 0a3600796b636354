"""Wavefront OBJ with polygons (quads kept) and per-corner UVs."""

from __future__ import annotations

import io
import pathlib

import numpy as np


def world_to_obj(verts: np.ndarray) -> np.ndarray:
    """(N, 3) world (Z up, face toward -Y) -> the Y-up frame Likeness OBJ files use: (x, z, -y)."""
    return np.stack([verts[:, 0], verts[:, 2], -verts[:, 1]], axis=1)


def obj_to_world(verts: np.ndarray) -> np.ndarray:
    """(N, 3) a Likeness OBJ file's Y-up coordinates -> world (Z up): the inverse of ``world_to_obj``."""
    return np.stack([verts[:, 0], -verts[:, 2], verts[:, 1]], axis=1)


def write_obj(path, verts: np.ndarray, polys: np.ndarray, corner_uvs: np.ndarray | None = None,
              name: str = "likeness_head") -> None:
    """Write a polygon mesh.

    verts: (N, 3) float, world metres (Blender frame: Z up). OBJ files are
    read as Y up by most tools, so we write (x, z, -y); Blender's importer
    (forward -Z, up Y) turns that back into our frame.
    polys: (P, 4) int, -1 padding for triangles. corner_uvs: (P, 4, 2) float.
    """
    verts = np.asarray(verts, dtype=np.float64)
    polys = np.asarray(polys, dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must be (N, 3), got {verts.shape}")
    if not np.isfinite(verts).all():
        raise ValueError("verts contain NaN or infinity")
    yup = world_to_obj(verts)
    buf = io.StringIO()
    buf.write(f"# Likeness head: {len(verts)} vertices, {len(polys)} faces\no {name}\n")
    np.savetxt(buf, yup, fmt="v %.6f %.6f %.6f")
    valid = polys >= 0
    counts = valid.sum(1)
    if corner_uvs is not None:
        uv = np.asarray(corner_uvs, dtype=np.float64)[valid]
        uniq, uv_index = np.unique(np.round(uv, 6), axis=0, return_inverse=True)
        np.savetxt(buf, uniq, fmt="vt %.6f %.6f")
        uv_ids = np.full(polys.shape, -1, dtype=np.int64)
        uv_ids[valid] = uv_index.reshape(-1)
    # One line per polygon in template order, so face indices survive a round trip.
    vid = (polys + 1).astype(str)
    if corner_uvs is not None:
        vid = np.char.add(np.char.add(vid, "/"), (uv_ids + 1).astype(str))
    lines = ["f " + " ".join(row[:n]) for row, n in zip(vid.tolist(), counts.tolist())]
    buf.write("\n".join(lines) + "\n")
    pathlib.Path(path).write_text(buf.getvalue())
