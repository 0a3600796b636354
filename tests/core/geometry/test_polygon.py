"""Plane polygons (core/geometry/polygon.py): inside by the even-odd rule, distance to the outline."""

from __future__ import annotations

import numpy as np

from core.geometry.polygon import distance_to_outline, inside_polygon

# An L: the unit square's lower-left three quarters of a 2 x 2 square, corners in order.
L_SHAPE = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], float)


def test_points_inside_a_concave_polygon():
    points = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5], [-0.1, 0.5], [2.5, 0.5], [0.5, 2.5]])
    np.testing.assert_array_equal(inside_polygon(points, L_SHAPE), [True, True, True, False, False, False, False])
    # Either way round the outline.
    np.testing.assert_array_equal(inside_polygon(points, L_SHAPE[::-1]), inside_polygon(points, L_SHAPE))


def test_inside_agrees_with_a_fine_area_count():
    rng = np.random.default_rng(0)
    angle = np.sort(rng.uniform(0, 2 * np.pi, 40))
    star = np.stack([np.cos(angle), np.sin(angle)], 1) * rng.uniform(0.4, 1.0, (40, 1))
    xs = (np.arange(400) + 0.5) / 200 - 1
    grid = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    area = inside_polygon(grid, star).mean() * 4.0
    x, y = star[:, 0], star[:, 1]
    shoelace = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert abs(area - shoelace) < 0.01 * shoelace


def test_distance_to_the_outline():
    points = np.array([[0.5, 0.5], [1.5, 1.5], [3, 0], [1, 1], [-1, -1]])
    np.testing.assert_allclose(distance_to_outline(points, L_SHAPE), [0.5, 0.5, 1.0, 0.0, np.sqrt(2)])
