"""The teeth seated behind the lips (core/template/mouth.py)."""

from __future__ import annotations

import numpy as np

from core.template import load_default
from core.template.mouth import MOUTH_PARTS, seat_teeth, teeth_through_lips


def test_the_template_stays_and_teeth_pushed_into_the_lips_go_back():
    t = load_default()
    verts, parts = np.asarray(t.verts), np.asarray(t.part_verts)
    same, mm = seat_teeth(t, verts, parts)
    assert mm == 0.0 and np.array_equal(same, parts)
    allowed = teeth_through_lips(t, verts, parts)

    names = list(t.part_names)
    mouth = np.isin(np.asarray(t.part_vert_part), [names.index(n) for n in MOUTH_PARTS])
    forward = parts.copy()
    forward[mouth, 1] -= 2e-3  # 2 mm towards the front: the incisors into the lips
    assert teeth_through_lips(t, verts, forward) > allowed + 20
    seated, mm = seat_teeth(t, verts, forward)
    assert 0.0 < mm <= 2.0 and teeth_through_lips(t, verts, seated) <= allowed
    np.testing.assert_allclose(seated[~mouth], parts[~mouth])  # the eyes stay
    np.testing.assert_allclose(seated[mouth] - forward[mouth], np.broadcast_to([0, mm * 1e-3, 0], (mouth.sum(), 3)),
                               atol=1e-7)  # float32 parts
