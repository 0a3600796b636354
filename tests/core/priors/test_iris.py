"""The iris colour read from a photo (core/priors/iris.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import GRACE_HOPPER
from core.priors.landmarks import LEFT_IRIS_CENTER, RIGHT_IRIS_CENTER
from core.priors.iris import iris_color


@pytest.fixture(scope="module")
def grace():
    from core.priors.image import load_image
    from core.priors.landmarks import detect_landmarks

    photo = load_image(GRACE_HOPPER)
    return photo.rgb, detect_landmarks(photo).points


def _paint_irises(rgb: np.ndarray, points: np.ndarray, colour) -> np.ndarray:
    """The photo with each iris disc painted ``colour``, a dark pupil and a white highlight in it."""
    out = rgb.copy()
    ys, xs = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]]
    for c in (RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER):
        centre = points[c]
        radius = np.linalg.norm(points[c + 1:c + 5] - centre, axis=1).mean()
        r = np.hypot(xs + 0.5 - centre[0], ys + 0.5 - centre[1]) / radius
        out[r <= 1.0] = colour
        out[r <= 0.3] = (5, 5, 5)
        out[(np.abs(xs + 0.5 - centre[0] - 0.5 * radius) < 0.15 * radius) & (r < 0.9)] = (255, 255, 255)
    return out


def test_a_painted_iris_reads_as_its_colour(grace):
    rgb, points = grace
    colour = (40, 110, 170)
    got = iris_color(_paint_irises(rgb, points, colour), points)
    assert got is not None and np.abs(np.array(got) * 255 - colour).max() < 6, got
    # Grace Hopper's own irises: a darkish colour, not the painted blue.
    own = iris_color(rgb, points)
    assert own is not None and max(own) < 0.6 and abs(own[2] - 170 / 255) > 0.1, own


def test_no_irises_no_colour(grace):
    rgb, points = grace
    assert iris_color(rgb, points[:468]) is None
    tiny = points.copy()
    for c in (RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER):
        tiny[c + 1:c + 5] = tiny[c] + 0.5  # a radius under a pixel
    assert iris_color(rgb, tiny) is None
