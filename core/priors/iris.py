"""The iris colour a photo shows, for the result's eye texture.

MediaPipe's FaceMesh (with irises) gives each iris a centre and four points on
its rim. The colour is read from a ring between the pupil and the rim
(IRIS_RING of the radius), where lids, lashes and the pupil's dark and the
cornea's highlights are least: of the ring's pixels the darkest and brightest
(TRIM each side, by luminance) are dropped and the rest's median taken, per eye,
then the two eyes' mean.
"""

from __future__ import annotations

import numpy as np

from .landmarks import LEFT_IRIS_CENTER, RIGHT_IRIS_CENTER

IRIS_RING = (0.35, 0.85)  # fraction of the iris radius
TRIM = 0.2  # share of the ring's darkest and of its brightest pixels left out
MIN_RADIUS_PX = 2.0  # an iris smaller than this says nothing about its colour
MIN_PIXELS = 12


def iris_color(rgb: np.ndarray, points: np.ndarray) -> tuple[float, float, float] | None:
    """(r, g, b) sRGB in 0..1 of the irises in ``rgb`` (H, W, 3 uint8) at FaceMesh ``points``
    (478, 2 pixels), or None where the landmarks have no irises or the irises are too small."""
    if len(points) <= LEFT_IRIS_CENTER + 4:
        return None
    h, w = rgb.shape[:2]
    colours = []
    for centre_id in (RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER):
        centre = points[centre_id]
        radius = float(np.linalg.norm(points[centre_id + 1:centre_id + 5] - centre, axis=1).mean())
        if not np.isfinite(radius) or radius < MIN_RADIUS_PX:
            continue
        x0, y0 = np.floor(centre - radius).astype(int)
        x1, y1 = np.ceil(centre + radius).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1]
        r = np.hypot(xs + 0.5 - centre[0], ys + 0.5 - centre[1]) / radius
        ring = (r >= IRIS_RING[0]) & (r <= IRIS_RING[1])
        px = rgb[y0:y1, x0:x1][ring].astype(np.float64) / 255.0
        if len(px) < MIN_PIXELS:
            continue
        luma = px @ np.array([0.2126, 0.7152, 0.0722])
        lo, hi = np.quantile(luma, [TRIM, 1.0 - TRIM])
        keep = px[(luma >= lo) & (luma <= hi)]
        colours.append(np.median(keep if len(keep) else px, axis=0))
    if not colours:
        return None
    return tuple(float(c) for c in np.mean(colours, axis=0))
