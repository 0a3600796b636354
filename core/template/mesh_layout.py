"""Polygon layouts of a template as padded arrays (for writers and losses)."""

from __future__ import annotations

import numpy as np

from core.geometry.mesh_layout import pad_polygons

from .model import Template


def padded_polygons(t: Template) -> np.ndarray:
    """(P, 4) polygon vertex ids with -1 padding (the template's polygons are tris and quads)."""
    return pad_polygons(t.poly_verts, t.poly_start)


def padded_part_polygons(t: Template) -> np.ndarray:
    """(Pp, 4) the eyes', teeth's and tongue's polygons (part vertex ids), padded like ``padded_polygons``."""
    return pad_polygons(t.part_poly_verts, t.part_poly_start)


def corner_uvs(t: Template, polys: np.ndarray) -> np.ndarray:
    """(P, 4, 2) per-corner UVs laid out like ``padded_polygons``."""
    return _pad_corners(t.uvs, t.poly_start, polys)


def part_corner_uvs(t: Template, polys: np.ndarray) -> np.ndarray:
    """(Pp, 4, 2) per-corner UVs of the eyes, teeth and tongue, laid out like ``padded_part_polygons``."""
    return _pad_corners(t.part_uvs, t.part_poly_start, polys)


def _pad_corners(uvs: np.ndarray, poly_start: np.ndarray, polys: np.ndarray) -> np.ndarray:
    counts = np.diff(poly_start)
    out = np.zeros(polys.shape + (2,), dtype=np.float32)
    col = np.arange(len(uvs)) - np.repeat(poly_start[:-1], counts)
    out[np.repeat(np.arange(len(counts)), counts), col] = uvs
    return out


def triangle_uvs(t: Template) -> np.ndarray:
    """(T, 3, 2) the UV of each corner of the template's triangles (``t.tris``, fan order)."""
    from core.geometry.mesh_layout import fan_triangulate

    corners, _ = fan_triangulate(pad_polygons(np.arange(len(t.poly_verts)), t.poly_start))
    return t.uvs[corners].astype(np.float32)


def vertex_uvs(t: Template) -> np.ndarray:
    """(N, 2) one UV per head vertex: its first polygon corner's (seam vertices have several)."""
    first = np.zeros(t.num_verts, np.int64)
    corners = np.arange(len(t.poly_verts))
    first[t.poly_verts[::-1]] = corners[::-1]
    return t.uvs[first].astype(np.float32)


def glb_head_vertex_map(t: Template) -> np.ndarray:
    """(M,) template vertex id of each head vertex as the GLB writer lays them out (split at UV
    seams); Blender's glTF import keeps that order, so posed Blender vertices map back to the template."""
    from core.export.gltf import split_by_uv

    polys = padded_polygons(t)
    return split_by_uv(polys, corner_uvs(t, polys))[1]


def glb_part_vertex_map(t: Template) -> np.ndarray:
    """(M,) part vertex id of each vertex of the eyes-and-mouth mesh as the GLB writer lays them out
    (split at UV seams, as ``glb_head_vertex_map``)."""
    from core.export.gltf import split_by_uv

    polys = padded_part_polygons(t)
    return split_by_uv(polys, part_corner_uvs(t, polys))[1]
