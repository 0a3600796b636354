"""Small random templates for tests of code that consumes templates."""

from __future__ import annotations

import numpy as np

from core.geometry.mesh_layout import fan_triangulate

from .model import Template


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) float64 proper rotations (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def random_template(seed: int = 0, grid: int = 4, joints: int = 6, controllers: int = 5, k: int = 3) -> Template:
    """A valid template: a (grid x grid) quad patch mirrored about x = 0, a random joint tree.

    Vertices: 2*grid*grid (mirrored pairs), quads kept, random rest frames,
    random sparse weights (k influences), dense random controller bases and
    one rigid part vertex per joint. Not symmetric in its rig: for model tests.
    """
    rng = np.random.default_rng(seed)
    xs, zs = np.meshgrid(np.linspace(0.01, 0.1, grid), np.linspace(0, 0.1, grid), indexing="ij")
    half = np.stack([xs.ravel(), rng.normal(0, 0.01, xs.size), zs.ravel()], 1)
    verts = np.concatenate([half, half * [-1, 1, 1]]).astype(np.float32)
    h = grid * grid
    mirror = np.concatenate([np.arange(h) + h, np.arange(h)])
    ii, jj = np.meshgrid(np.arange(grid - 1), np.arange(grid - 1), indexing="ij")
    a = (ii * grid + jj).ravel()
    quads = np.stack([a, a + grid, a + grid + 1, a + 1], 1)
    quads = np.concatenate([quads, quads[:, ::-1] + h])
    poly_verts = quads.ravel().astype(np.int64)
    poly_start = np.arange(0, 4 * len(quads) + 1, 4, dtype=np.int64)
    tris, tri_poly = fan_triangulate(quads)
    n = len(verts)
    parents = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, joints)], dtype=np.int64)
    rest = np.tile(np.eye(4), (joints, 1, 1))
    rest[:, :3, :3] = random_rotations(rng, joints)
    rest[:, :3, 3] = rng.normal(0, 0.05, (joints, 3))
    skin_idx = np.stack([rng.choice(joints, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    w = rng.random((n, k)) + 0.1
    skin_w = (w / w.sum(1, keepdims=True)).astype(np.float32)
    skin_w[:, -1] = 1 - skin_w[:, :-1].sum(1)
    r = controllers
    return Template(
        verts=verts, poly_verts=poly_verts, poly_start=poly_start,
        uvs=rng.random((len(poly_verts), 2)).astype(np.float32),
        tris=tris.astype(np.int64), tri_poly=tri_poly.astype(np.int64),
        skin_idx=skin_idx, skin_w=skin_w,
        joint_names=[f"j{i}" for i in range(joints)], joint_parents=parents,
        joint_rest=rest.astype(np.float32),
        joint_tails=(rest[:, :3, 3] + rest[:, :3, 1] * 0.02).astype(np.float32),
        ctrl_names=[f"c{i}" for i in range(r)],
        ctrl_basis=rng.normal(0, 0.01, (r, 2, n, 3)).astype(np.float32),
        ctrl_joint_basis=rng.normal(0, 0.01, (r, 2, joints, 3)).astype(np.float32),
        ctrl_tail_basis=rng.normal(0, 0.01, (r, 2, joints, 3)).astype(np.float32),
        ctrl_bounds=np.tile([-1.0, 1.0], (r, 1)).astype(np.float32),
        ctrl_default=np.zeros(r, np.float32),
        ctrl_is_expression=np.arange(r) >= r - 1,
        part_names=["part"], part_verts=rest[:, :3, 3].astype(np.float32) + 0.01,
        part_poly_verts=np.arange(3, dtype=np.int64), part_poly_start=np.array([0, 3], dtype=np.int64),
        part_uvs=np.zeros((3, 2), np.float32),
        part_vert_part=np.zeros(joints, np.int64), part_joint=np.arange(joints, dtype=np.int64),
        part_ctrl_basis=rng.normal(0, 0.01, (r, 2, joints, 3)).astype(np.float32),
        mirror=mirror.astype(np.int64), source_vertex_id=np.full(n, -1, np.int64),
        regions={"face_mask": np.arange(n, dtype=np.int64)},
        lmk_tri=np.array([0, 1], dtype=np.int64),
        lmk_bary=np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32),
        lmk_kind=np.array([1, 2], dtype=np.int8),
        lmk_subsets={"corners": np.array([0], dtype=np.int64)},
        info={"source": "random_template", "seed": seed},
    )
