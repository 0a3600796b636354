"""The template's wire form: round trip with the core's Template, and named rejections."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.protocol import decode_frame, encode
from bridge.schema import SchemaError
from bridge.template import ARRAYS, TemplateMessage
from core.template import Template, random_template


@pytest.fixture(scope="module")
def wire():
    arrays, meta = random_template(seed=3).to_arrays()
    return arrays, meta


def test_round_trip_through_the_wire_rebuilds_the_same_template(wire):
    arrays, meta = wire
    assert set(ARRAYS) <= set(arrays)
    arrays = {**arrays, "from_a_newer_core": np.arange(3, dtype=np.int64)}  # passes through
    msg = TemplateMessage.from_arrays(arrays, meta).to_message("t1")
    received = TemplateMessage.from_message(decode_frame(bytearray(encode(msg))))
    rebuilt = Template.from_arrays(received.arrays, received.meta)
    arrays2, meta2 = rebuilt.to_arrays()
    assert meta2 == meta
    assert set(arrays2) == set(arrays) - {"from_a_newer_core"}
    np.testing.assert_array_equal(received.arrays["from_a_newer_core"], [0, 1, 2])
    for name in arrays2:
        np.testing.assert_array_equal(arrays2[name], arrays[name], err_msg=name)
        assert arrays2[name].dtype == arrays[name].dtype, name


def _corrupt(wire, edit):
    arrays, meta = wire
    arrays = {k: v.copy() for k, v in arrays.items()}
    meta = {**meta}
    edit(arrays, meta)
    return TemplateMessage(arrays, meta)


def _set(name, index, value):
    def edit(a, m):
        a[name][index] = value
    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_set("verts", (0, 0), np.nan), "verts contains NaN"),
        (_set("poly_verts", 0, 10_000), "poly_verts has index 10000"),
        (_set("tris", (0, 1), -1), "tris has index -1"),
        (_set("skin_w", (0, 0), 5.0), "weights of vertex 0"),
        (_set("joint_parents", 1, 3), "earlier joint"),
        (_set("joint_parents", 1, -1), "one root"),
        (_set("ctrl_default", 0, 99.0), "default"),
        (_set("mirror", 0, -5), "mirror has index"),
        (_set("source_vertex_id", 0, -2), "source_vertex_id"),
        (_set("poly_start", -1, 3), "poly_start"),
        (lambda a, m: a.pop("uvs"), "missing array 'uvs'"),
        (lambda a, m: a.__setitem__("verts", a["verts"].astype(np.float64)), "verts' must be float32"),
        (lambda a, m: a.__setitem__("uvs", a["uvs"][:-1]), "uvs"),
        (lambda a, m: a.__setitem__("joint_rest", a["joint_rest"][:, :3]), "joint_rest"),
        (lambda a, m: m.__setitem__("format_version", 99), "format_version"),
        (lambda a, m: m.__setitem__("joint_names", m["joint_names"][:-1]), "joint_names"),
        (lambda a, m: m.__setitem__("ctrl_names", ["a"] * len(m["ctrl_names"])), "duplicate"),
        (lambda a, m: m.__setitem__("regions", [*m["regions"], "nose"]), "region.nose"),
        (lambda a, m: a.__setitem__("ctrl_basis", a["ctrl_basis"][:, 0]), "ctrl_basis"),
    ],
)
def test_bad_templates_are_rejected_naming_the_problem(wire, edit, match):
    with pytest.raises(SchemaError, match=match):
        _corrupt(wire, edit).validate()


def test_landmark_and_region_checks(wire):
    arrays, meta = wire
    if arrays["lmk_bary"].shape[0]:
        with pytest.raises(SchemaError, match="lmk_bary"):
            _corrupt(wire, _set("lmk_bary", (0, 0), 3.0)).validate()
    if meta["regions"]:
        name = "region." + meta["regions"][0]
        with pytest.raises(SchemaError, match="outside"):
            _corrupt(wire, _set(name, 0, 10_000)).validate()
