"""tools/surface_gap_picture.py: the default head's distance to another head's surface reads
back an offset where it was made, ignores a small similarity (an import's frame), and draws
the picture."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import trimesh
from PIL import Image

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))

import surface_gap_picture  # noqa: E402


def test_the_gap_reads_the_nose_moved_out_and_not_a_similarity(tmp_path):
    from core.bench.score import face_regions
    from core.template import load_default

    t = load_default()
    v = np.asarray(t.verts, np.float64)
    nose = face_regions(t) == 0
    normals = trimesh.Trimesh(v, t.tris, process=False).vertex_normals
    moved = v + 0.001 * nose[:, None] * normals
    a = np.radians(2.0)  # an import's frame is the default head's up to a small similarity
    turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    turned = 1.02 * moved @ turn.T + np.array([0.002, -0.001, 0.003])
    head = dataclasses.replace(t, verts=turned.astype(np.float32))
    gap = surface_gap_picture.surface_gap(t, head)
    tip = nose & (np.abs(v[:, 0]) < 0.01)
    assert np.median(gap[tip]) > 0.6
    face = np.zeros(t.num_verts, bool)
    face[t.regions["face_mask"]] = True
    far = face & (np.linalg.norm(v - v[nose].mean(0), axis=1) > 0.04)  # the face away from the nose
    # (the face's alignment leans a little toward the moved nose, as the scorer's does)
    assert np.median(gap[far]) < 0.2 and np.median(gap[tip]) > 4 * np.median(gap[far])

    out = tmp_path / "gap.png"
    surface_gap_picture.draw(out, t, gap, "nose 1 mm out")
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[0] > 200 and img.shape[1] > 800
    assert surface_gap_picture.main([str(out), str(tmp_path / "missing.npz")]) == 2
