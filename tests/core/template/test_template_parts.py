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
