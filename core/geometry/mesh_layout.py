"""Mesh layout on numpy arrays: padded polygons, fan triangles, points on the surface, vertex normals.

The numpy home of these for callers that hold arrays (the OBJ and glTF writers, the
template builder's fixtures, the benchmarks, the offline embedding tools). Batched
torch ops live beside it: ``normals.vertex_normals``, ``laplacian.Laplacian``,
``primitives.triangulate`` (a torch view of :func:`fan_triangulate`);
``core.render.surface_points`` evaluates landmark embeddings on torch vertices.
"""

from __future__ import annotations

import numpy as np

from .constants import NORMALIZE_EPS


def pad_polygons(poly_verts: np.ndarray, poly_start: np.ndarray) -> np.ndarray:
    """(P, max(N, 4)) polygon vertex ids with -1 padding, from flat corners (C,) int and offsets (P+1,) int."""
    counts = np.diff(poly_start)
    width = int(counts.max()) if len(counts) else 4
    out = np.full((len(counts), max(width, 4)), -1, dtype=np.int64)
    col = np.arange(len(poly_verts)) - np.repeat(poly_start[:-1], counts)
    rows = np.repeat(np.arange(len(counts)), counts)
    out[rows, col] = poly_verts
    return out


def fan_triangulate(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-split polygons into triangles: (a, b, c, d) -> (a, b, c), (a, c, d).

    polygons: (P, N) int corner ids, padded with -1 for polygons with fewer than N
    corners. Returns tris (T, 3) int64 in polygon order (each polygon's triangles
    together, as the template's ``tris``) and tri_polygon (T,) int64, the polygon
    each triangle came from.
    """
    polygons = np.asarray(polygons, dtype=np.int64)
    if polygons.ndim != 2 or polygons.shape[1] < 3:
        raise ValueError(f"polygons must have shape (P, N>=3), got {polygons.shape}")
    k = np.arange(1, polygons.shape[1] - 1)
    fans = np.stack(
        [np.broadcast_to(polygons[:, :1], (len(polygons), len(k))), polygons[:, k], polygons[:, k + 1]], axis=-1
    )  # (P, N-2, 3)
    keep = fans[..., 2] >= 0
    owner = np.broadcast_to(np.arange(len(polygons))[:, None], keep.shape)
    return fans[keep], owner[keep]


def surface_points(verts: np.ndarray, tris: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Points given by triangle ids and barycentrics (landmark embeddings) on numpy vertices.

    verts: (V, ...) float (positions, or any per-vertex field such as normals, weights or
    controller deltas); tris: (T, 3) int; tri: (L,) int rows of ``tris``; bary: (L, 3) float.
    Returns (L, ...) in the promoted dtype of verts and bary.
    """
    corners = np.asarray(verts)[np.asarray(tris)[tri]]  # (L, 3, ...)
    bary = np.asarray(bary)
    return (corners * bary.reshape(bary.shape + (1,) * (corners.ndim - 2))).sum(1)


def polygon_edges(poly_verts: np.ndarray, poly_start: np.ndarray) -> np.ndarray:
    """(C, 2) int64 every polygon side as (smaller id, larger id), one row per corner, repeats kept
    (an edge shared by two polygons appears twice). poly_verts (C,), poly_start (P+1,) as in the
    template format; triangles are polygons too (``poly_start = arange(0, 3 T + 1, 3)``)."""
    poly_verts = np.asarray(poly_verts, np.int64)
    nxt = np.arange(len(poly_verts)) + 1
    nxt[np.asarray(poly_start)[1:] - 1] = np.asarray(poly_start)[:-1]
    return np.sort(np.stack([poly_verts, poly_verts[nxt]], 1), 1)


def triangle_edges(tris: np.ndarray) -> np.ndarray:
    """(E, 2) int64 the unique edges of a triangle mesh (tris (T, 3))."""
    tris = np.asarray(tris, np.int64)
    return np.unique(polygon_edges(tris.reshape(-1), np.arange(0, tris.size + 1, 3)), axis=0)


def neighbour_mean(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N, ...) each vertex's mean of ``values`` (N, ...) over its neighbours along ``edges`` (E, 2),
    0 where it has none (the umbrella average, numpy side)."""
    both = np.concatenate([edges, edges[:, ::-1]])
    total = np.zeros_like(values)
    np.add.at(total, both[:, 0], values[both[:, 1]])
    degree = np.bincount(both[:, 0], minlength=len(values)).astype(np.float64)
    return total / np.maximum(degree, 1).reshape((-1,) + (1,) * (values.ndim - 1))


def face_turn_cosine(rest: np.ndarray, moved: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(T,) the cosine of the angle each triangle's normal turns from ``rest`` to ``moved`` (both
    (V, 3)); negative where it turned over, 0 where either is degenerate."""
    def unit_normals(v):
        n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), NORMALIZE_EPS)
    return (unit_normals(np.asarray(rest, np.float64)) * unit_normals(np.asarray(moved, np.float64))).sum(1)


def vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals: verts (V, 3) float, tris (T, 3) int -> (V, 3).

    A vertex on no face, or only on degenerate ones, gets the zero vector.
    """
    fn = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])  # 2 * area
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, tris[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), NORMALIZE_EPS)
