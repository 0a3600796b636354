"""The default template's modelled eyes and mouth (core/template/parts.py): UVs that survive the writers."""

from __future__ import annotations

import numpy as np
import pytest

from core.template import load_default
from core.template.parts import IRIS_ANGLE, UV_IRIS_RADIUS


@pytest.fixture(scope="module")
def template():
    return load_default()


def _corners(t, name):
    """(corner part-vertex ids, their UVs) of one part."""
    part = t.part_vert_part[t.part_poly_verts]
    keep = part == t.part_names.index(name)
    return t.part_poly_verts[keep], t.part_uvs[keep]


@pytest.mark.parametrize("side", "LR")
def test_eyeball_uvs_map_the_iris_to_a_disc(template, side):
    t = template
    ids, uv = _corners(t, f"eyeball.{side}")
    ball = t.part_verts[t.part_vert_part == t.part_names.index(f"eyeball.{side}")]
    centre = 0.5 * (ball.min(0) + ball.max(0))
    gaze = np.array([0.0, -1.0, 0.0])
    d = t.part_verts[ids] - centre
    angle = np.degrees(np.arccos(np.clip(d @ gaze / np.linalg.norm(d, axis=1), -1, 1)))
    rho = np.hypot(*(uv - 0.5).T)
    assert np.isfinite(uv).all() and (uv >= 0).all() and (uv <= 1).all()
    iris = angle <= IRIS_ANGLE + 0.01
    assert iris.sum() > 100 and (rho[iris] <= UV_IRIS_RADIUS + 1e-5).all()
    assert (rho[~iris] > UV_IRIS_RADIUS + 1e-5).all()
    # the disc is round: the limbus ring sits at one UV radius all the way round
    limbus = np.abs(angle - IRIS_ANGLE) < 0.01
    assert limbus.sum() >= 32 and np.ptp(rho[limbus]) < 1e-5
    # the cornea over it maps the same disc (a texture-only view shows the iris through it)
    _, cuv = _corners(t, f"cornea.{side}")
    assert (np.hypot(*(cuv - 0.5).T) <= UV_IRIS_RADIUS * 1.2).all()


def test_every_part_has_uvs_and_the_writers_keep_them(template, tmp_path):
    from core.export.gltf import split_by_uv
    from core.template.mesh_layout import glb_part_vertex_map, padded_part_polygons, part_corner_uvs
    from core.fit.outputs import write_template_glb

    t = template
    for name in t.part_names:
        _, uv = _corners(t, name)
        assert np.ptp(uv, axis=0).min() > 0.01, name  # not all at one point (the tongue keeps its MakeHuman atlas island)
    polys = padded_part_polygons(t)
    tris, vmap, uv = split_by_uv(polys, part_corner_uvs(t, polys))
    assert uv is not None and np.array_equal(vmap, glb_part_vertex_map(t))
    write_template_glb(tmp_path / "t.glb", t)
    import json
    import struct

    data = (tmp_path / "t.glb").read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20:20 + length])
    parts = next(m for m in gltf["meshes"] if m["name"] == "likeness_eyes_mouth")
    assert "TEXCOORD_0" in parts["primitives"][0]["attributes"]
    assert gltf["accessors"][parts["primitives"][0]["attributes"]["POSITION"]]["count"] == len(vmap)


def test_triangle_and_vertex_uvs_follow_the_head_polygons(template):
    from core.template.mesh_layout import triangle_uvs, vertex_uvs

    tri_uv = triangle_uvs(template)
    assert tri_uv.shape == (len(template.tris), 3, 2)
    # Each triangle corner carries a UV of that vertex's polygon corners.
    first = vertex_uvs(template)
    assert first.shape == (template.num_verts, 2)
    seamless = np.ones(template.num_verts, bool)
    for v, uv in zip(template.tris.reshape(-1), tri_uv.reshape(-1, 2)):
        seamless[v] &= bool(np.allclose(uv, first[v]))
    # Only seam vertices (several UVs) may differ from their first corner's UV.
    assert seamless.mean() > 0.9
    corners = {(int(v), tuple(np.round(uv, 6))) for v, uv in zip(template.poly_verts, template.uvs)}
    assert all((int(v), tuple(np.round(uv, 6))) in corners
               for v, uv in zip(template.tris.reshape(-1)[::97], tri_uv.reshape(-1, 2)[::97]))


def _first_hit_every_triangle(verts, tris, points, sign):
    """The reference: every ray against every triangle, (M, T) at once."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    e1, e2 = (b - a)[:, [0, 2]], (c - a)[:, [0, 2]]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) > 1e-14, det, np.nan)
    d = points[:, None, [0, 2]] - a[None, :, [0, 2]]
    u = (d[..., 0] * e2[:, 1] - d[..., 1] * e2[:, 0]) / det
    w = (e1[:, 0] * d[..., 1] - e1[:, 1] * d[..., 0]) / det
    y = a[:, 1] + u * (b[:, 1] - a[:, 1]) + w * (c[:, 1] - a[:, 1])
    ahead = (u >= 0) & (w >= 0) & (u + w <= 1) & ((y - points[:, 1:2]) * sign > 0)
    dist = np.where(ahead, (y - points[:, 1:2]) * sign, np.inf)
    first = dist.argmin(1)
    hit = ahead.any(1)
    normal_y = np.cross(b - a, c - a)[:, 1]
    return hit, np.where(hit, y[np.arange(len(points)), first], np.nan), np.where(hit, normal_y[first], np.nan)


def test_first_hit_along_y_matches_every_triangle_tested(template):
    """The grid that picks which triangles a ray is tested against changes no answer: on the
    head from the teeth (toward the camera and away), from jittered vertices and from random
    points, hits, depths and the hit triangle's normal equal testing every triangle."""
    from core.template.parts import first_hit_along_y

    verts, tris = np.asarray(template.verts, np.float64), np.asarray(template.tris)
    rng = np.random.default_rng(0)
    cases = [(np.asarray(template.part_verts, np.float64), -1.0), (np.asarray(template.part_verts, np.float64), 1.0),
             (verts[::3] + rng.normal(0.0, 1e-4, verts[::3].shape), -1.0),
             (rng.uniform(verts.min(0), verts.max(0), (1500, 3)), 1.0), (verts[:100], -1.0)]
    hits = []
    for points, sign in cases:
        want = _first_hit_every_triangle(verts, tris, points, sign)
        got = first_hit_along_y(verts, tris, points, sign)
        hits.append(want[0])
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)
    hits = np.concatenate(hits)
    assert 0.2 < hits.mean() < 0.9, hits.mean()  # both rays that meet the head and rays that miss it
    hit, y, normal = first_hit_along_y(verts, tris[:0], verts[:5], -1.0)
    assert not hit.any() and np.isnan(y).all() and np.isnan(normal).all()
