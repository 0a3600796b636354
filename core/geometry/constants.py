"""Units and tolerances: the one home of each (trimesh's ``constants.py``).

Positions are metres everywhere. Losses that want numbers of order one scale
lengths by ``MM`` or ``CM`` first. A tolerance that must differ from another
gets its own name here, saying what it guards.
"""

from __future__ import annotations

MM = 1000.0
"""Millimetres per metre: a length in metres times ``MM`` is in millimetres."""

CM = 100.0
"""Centimetres per metre."""

COT_MAX = 1.0e3
"""Largest |cot| a cotangent weight may take (angles below ~0.06 degrees)."""

CURVE_SEGMENT_FLOOR = 1.0e-3
"""Shortest curve segment used as a divisor, relative to the curve's mean segment length."""

NORMALIZE_EPS = 1.0e-12
"""Smallest length a normal is divided by (``core.geometry.safe.normalize_clamped`` and the
numpy vertex normals): in metres, far below any triangle's size."""

POINT_VISIBILITY_REL_TOL = 0.01
"""``core.render.visible_points``: a point is visible when no surface at its pixel is
nearer by more than this fraction of its depth (1 cm at 1 m); absorbs the depth
change across a pixel."""

TEXEL_VISIBILITY_REL_TOL = 0.005
"""``core.texture.extract.visible_texels``: a texel takes a view's colour only when it is no
deeper than the nearest surface in its pixel's 3 x 3 neighbourhood plus this fraction of
that depth (3.75 mm at 0.75 m). Tighter than ``POINT_VISIBILITY_REL_TOL`` and measured
against a neighbourhood, not one pixel: the two tests differ and keep their own values."""
