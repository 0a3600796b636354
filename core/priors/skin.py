"""Where a photo shows bare skin: the face inside FaceMesh's oval, minus
eyes, brows and lips.

Made from the detector's own landmark sets (MediaPipe FaceMesh's
connection lists: the face oval, eyes, eyebrows, lips) so no face-parsing
network is needed. The mask is what the shading term compares: albedo there
is close to one skin tone, so a smooth light explains most of its pixels
(on the bench's Cycles renders a 9-coefficient light on the true normals
explains 85-88 % of the grey-level variance inside this mask, 96 % once
freckles and cast shadows are rejected as outliers).

Nostrils, hair over the forehead, glasses and beards are not removed here; the
shading term's robust weights drop such pixels.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .landmarks import eye_corner_distance

# Margin (fraction of the eye-corner distance) the mask keeps from every
# edge it has: the oval (background and hair beyond), and the eyes, brows and lips.
EDGE_MARGIN = 0.04
# Eyes and brows grow by this fraction of the eye distance before they are cut out (lashes, brow hairs).
FEATURE_GROWTH = 0.05


@functools.lru_cache(maxsize=1)
def _landmark_sets() -> dict[str, tuple]:
    """Name -> point ids: an ordered loop for the oval, point sets for the features."""
    from .mediapipe_solutions import solutions

    conn = solutions().face_mesh_connections

    return {
        "oval": tuple(_edge_loop(conn.FACEMESH_FACE_OVAL)),
        "features": tuple(
            tuple(sorted({a for edge in edges for a in edge}))
            for edges in (conn.FACEMESH_LEFT_EYE, conn.FACEMESH_RIGHT_EYE, conn.FACEMESH_LEFT_EYEBROW,
                          conn.FACEMESH_RIGHT_EYEBROW, conn.FACEMESH_LIPS)
        ),
    }


def face_oval_ids() -> np.ndarray:
    """MediaPipe's face-oval point ids (the outline FaceMesh draws), in loop order."""
    return np.asarray(_landmark_sets()["oval"], np.int64)


def _edge_loop(edges) -> list[int]:
    """The closed loop of point ids that a set of undirected edges forms."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    start = min(nbrs)
    order, prev, cur = [start], None, start
    while True:
        nxt = [n for n in nbrs[cur] if n != prev]
        if not nxt or nxt[0] == start or len(order) > len(nbrs):
            return order
        order.append(nxt[0])
        prev, cur = cur, nxt[0]


# Sub-pixel accuracy for the polygon fills: 4 fractional bits.
_SHIFT = 4


def _fixed(p: np.ndarray) -> np.ndarray:
    """Pixel coordinates (centres at +0.5) as OpenCV's fixed-point polygon vertices."""
    return np.round((p - 0.5) * (1 << _SHIFT)).astype(np.int32)


def feature_mask(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) bool: the eyes, brows and lips of the face whose 478 FaceMesh points are
    ``landmarks`` (their convex hulls, grown by ``FEATURE_GROWTH`` eye distances)."""
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape[0] < 468 or pts.shape[1] != 2:
        raise ValueError(f"skin_mask needs FaceMesh's 478 (or 468) points, got {pts.shape}")
    cut = np.zeros((height, width), np.uint8)
    for ids in _landmark_sets()["features"]:
        hull = cv2.convexHull(_fixed(pts[list(ids)]).reshape(-1, 1, 2))
        cv2.fillPoly(cut, [hull], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    grow = max(1, int(round(FEATURE_GROWTH * eye_corner_distance(pts))))
    return cv2.dilate(cut, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))).astype(bool)


def skin_mask(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) bool: skin pixels of the face whose 478 FaceMesh points are ``landmarks``.

    landmarks: (478, 2) pixels (x right, y down, centres at +0.5).
    """
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape[0] < 468 or pts.shape[1] != 2:
        raise ValueError(f"skin_mask needs FaceMesh's 478 (or 468) points, got {pts.shape}")
    iod = eye_corner_distance(pts)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [_fixed(pts[list(_landmark_sets()["oval"])])], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    mask &= 1 - feature_mask(pts, width, height).astype(np.uint8)
    margin = max(1, int(round(EDGE_MARGIN * iod)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    return mask.astype(bool)
