"""Deformation transfer between two meshes of one topology.

A shape key made on one head (the template's expressions) moved onto another
head (a fitted identity) by adding its vertex deltas keeps the deltas' world
directions and lengths. Where the new head's surface is shaped or oriented
otherwise (a fuller chin, a thinner lip, an eyelid at another angle) the same
deltas overshoot, and faces fold: the template opens its jaw with 8 flipped
faces, a fitted head given the template's deltas with 44-91.

Here the key travels as what it does to each triangle instead: its
deformation gradient (Sumner and Popovic, "Deformation transfer for triangle
meshes", SIGGRAPH 2004: two edges and a normal scaled by the inverse square
root of its length span a triangle's frame; the gradient maps the rest frame
onto the deformed one). On the new head every triangle edge is mapped by its
triangle's gradient and the new positions are the least-squares fit to those
edges, with the vertices the key leaves still held. On the source mesh itself
the transfer returns the source's deltas.

Numpy and scipy on the CPU: it runs once per result, not inside an optimiser.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from core.geometry.sparse_solve import spd_solve

# A vertex the source key moves less than this (metres) is held where it is.
STILL_M = 1e-6
# Solves after the first for the triangles the transfer alone turned over: at most this many, each
# weighting those triangles' edges this much more and asking them for their gradient's rotation only.
REFINE_STEPS = 6
REFINE_WEIGHT = 10.0
# Triangles whose frame is this close to singular carry no gradient of their own.
_MIN_FRAME_DET = 1e-18


def triangle_frames(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(F, 3, 3) per triangle the columns e1 = v1 - v0, e2 = v2 - v0 and n / sqrt(|n|), n = e1 x e2."""
    e1 = verts[tris[:, 1]] - verts[tris[:, 0]]
    e2 = verts[tris[:, 2]] - verts[tris[:, 0]]
    n = np.cross(e1, e2)
    n = n / np.sqrt(np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30))
    return np.stack([e1, e2, n], axis=-1)


def _inverse_frames(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(F, 3, 3) the inverse of each triangle's frame; 0 where the triangle is degenerate (it then
    carries no gradient of its own: see _gradients)."""
    frames = triangle_frames(verts, tris)
    ok = np.abs(np.linalg.det(frames)) > _MIN_FRAME_DET
    out = np.zeros_like(frames)
    out[ok] = np.linalg.inv(frames[ok])
    return out


def _gradients(moved_frames: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """(K, 3, 3) moved frame times rest inverse; the identity where the rest frame had none."""
    out = moved_frames @ inverse
    out[~inverse.any(axis=(1, 2))] = np.eye(3)
    return out


def deformation_gradients(rest: np.ndarray, moved: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(F, 3, 3) the linear map of each triangle's rest frame onto its moved frame (identity where the
    rest triangle is degenerate)."""
    return _gradients(triangle_frames(moved, tris), _inverse_frames(rest, tris))


def _rotation_part(m: np.ndarray) -> np.ndarray:
    """(K, 3, 3) the rotation of each matrix's polar decomposition."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    return u @ vt


def _flipped(rest_frames: np.ndarray, moved_frames: np.ndarray) -> np.ndarray:
    """(F,) bool: the triangle's normal (its frame's third column) turned by more than 90 degrees."""
    return (rest_frames[:, :, 2] * moved_frames[:, :, 2]).sum(1) < 0


def transfer_deltas(source: np.ndarray, deltas: np.ndarray, target: np.ndarray, tris: np.ndarray,
                    still: float = STILL_M) -> np.ndarray:
    """Carry displacement fields made on ``source`` onto ``target`` (same vertex order and triangles).

    source, target: (N, 3) rest positions; deltas: (E, N, 3) the source's keys; tris: (F, 3).
    Returns (E, N, 3) the target's keys. Each key is solved on the vertices it moves: every directed
    edge of a triangle touching them is asked to become its triangle's gradient times the target's
    edge, weighted by 1 / |edge|^2 (a relative error, so short edges at the lids and lips count as
    much as long ones); the vertices it leaves still stay. Triangles the solve turns over where the
    source's do not are then asked for their gradient's rotation alone, with more weight, and solved
    again (REFINE_STEPS times at most; the solve with the fewest such triangles is kept).
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    tris = np.asarray(tris, np.int64)
    deltas = np.asarray(deltas, np.float64)
    if source.shape != target.shape or deltas.shape[1:] != source.shape:
        raise ValueError(f"shapes differ: source {source.shape}, target {target.shape}, deltas {deltas.shape}")
    n = len(target)
    # The source's and the target's rest frames, once; the source's inverted.
    frames, target_frames = triangle_frames(source, tris), triangle_frames(target, tris)
    inverse = _inverse_frames(source, tris)
    out = np.zeros_like(deltas)
    for k, d in enumerate(deltas):
        moving = np.linalg.norm(d, axis=1) >= still
        if not moving.any():
            continue
        # The key's own triangles (those touching a vertex it moves) and their directed edges: a
        # shared edge appears once per triangle, each with its own gradient.
        tri_ids = np.flatnonzero(moving[tris].any(1))
        own = tris[tri_ids]
        moved_source = triangle_frames(source + d, own)
        grad = _gradients(moved_source, inverse[tri_ids])
        e = np.concatenate([own[:, [0, 1]], own[:, [1, 2]], own[:, [2, 0]]])
        edge_tri = np.tile(np.arange(len(own)), 3)
        vec = target[e[:, 1]] - target[e[:, 0]]
        w = 1.0 / np.maximum((vec * vec).sum(1), 1e-16)
        col = np.full(n, -1)
        col[moving] = np.arange(int(moving.sum()))
        rows = np.arange(len(e))
        # x_j - x_i = want, unknowns only where the key moves; held ends go to the right-hand side.
        sign = np.stack([-np.ones(len(e)), np.ones(len(e))], 1)
        free = col[e] >= 0
        g = sp.csr_matrix((sign[free], (np.repeat(rows, 2).reshape(-1, 2)[free], col[e][free])),
                          shape=(len(e), int(moving.sum())))
        held = (sign[..., None] * np.where(free[..., None], 0.0, target[e])).sum(1)
        flips_source = _flipped(frames[tri_ids], moved_source)
        best = None
        for _ in range(1 + REFINE_STEPS):
            rhs = np.einsum("mij,mj->mi", grad[edge_tri], vec) - held
            gw = g.T.multiply(w[None, :]).tocsr()
            normal = (gw @ g).tocsc()
            # A faint pull towards the added deltas keeps a part with no held vertex (a whole mesh
            # that moves) solvable; 1e-9 of the edges' weight changes nothing where edges decide.
            lam = 1e-9 * float(normal.diagonal().mean())
            x = spd_solve(normal + lam * sp.identity(normal.shape[0], format="csc"),
                          gw @ rhs + lam * (target[moving] + d[moving]))
            moved = target.copy()
            moved[moving] = x
            # A triangle the least-squares compromise turns over where the source's does not: its
            # edges count REFINE_WEIGHT times more in the next solve. The solve with the fewest is kept.
            worse = _flipped(target_frames[tri_ids], triangle_frames(moved, own)) & ~flips_source
            if best is None or worse.sum() < best[0]:
                best = (int(worse.sum()), x)
            if not worse.any():
                break
            w = np.where(worse[edge_tri], w * REFINE_WEIGHT, w)
            # Such a triangle is asked for its gradient's rotation alone (polar part): a rotation
            # the source's triangle makes without turning over cannot turn another one over.
            grad[worse] = _rotation_part(grad[worse])
        out[k, moving] = best[1] - target[moving]
    return out
