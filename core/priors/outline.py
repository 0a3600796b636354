"""The head's outline in a photo, as a field the fit's outline term reads.

A head mask (a probability per pixel, e.g. the face prior's skin mask, which
covers the whole head: face, scalp, ears and neck) gives the head's outer
silhouette where the head meets the background. The fit pulls the mesh's own
occluding contour onto it (``core/fit/objective.py``, the ``outline`` term).

Only the outer boundary of the largest piece of the mask counts (holes such as
the eyes and mouth are filled), and only where the mask was actually predicted:
boundary pixels near the edge of the region the mask covers (a crop) or of the
photo are not the head's outline and are left out. Where the head mask stops at
hair, a hat or a collar, its boundary is not the head's silhouette either: with a
person mask (MediaPipe's selfie segmentation, ``person_mask``: the whole person,
hair and clothes included) only boundary pixels with background just outside
them are trusted. The field is the signed distance to the trusted boundary in
pixels (negative inside the head) and a weight that is 1 where that boundary is
the nearest boundary of any kind and within ``reach`` pixels, else 0: a contour
point near an untrusted edge (a crop's border, hair the mask stopped at) is not
pulled anywhere.
"""

from __future__ import annotations

import threading

import numpy as np

# Boundary pixels this close (pixels) to the edge of the covered region are not trusted.
EDGE_MARGIN_PX = 4
# The field is kept at most this many pixels on its long side (it is smooth; a photo's
# own resolution would cost 8 bytes a pixel for nothing).
OUTLINE_MAX_RES = 1024
# A boundary pixel is the head's silhouette when the person mask shows background
# within this many pixels of it (the person mask is coarse: 256 x 256 inside MediaPipe).
BACKGROUND_NEAR_PX = 4

_lock = threading.Lock()
_segmenter = None


def person_mask(rgb: np.ndarray) -> np.ndarray:
    """(h, w) float32 probability that a pixel shows the person (hair, clothes included),
    from MediaPipe's selfie segmentation (shipped in the MediaPipe wheel; nothing downloaded)."""
    global _segmenter
    with _lock:
        if _segmenter is None:
            try:
                from .mediapipe_solutions import solutions

                selfie_segmentation = solutions().selfie_segmentation
            except ImportError as exc:
                raise ImportError("the person mask needs MediaPipe 0.10.21: pip install 'likeness[landmarks]'") \
                    from exc
            _segmenter = selfie_segmentation.SelfieSegmentation(model_selection=0)
        out = _segmenter.process(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8))
    mask = out.segmentation_mask
    return np.zeros(rgb.shape[:2], np.float32) if mask is None else np.asarray(mask, np.float32)


def outline_field(head: np.ndarray, covered: np.ndarray | None = None, person: np.ndarray | None = None,
                  reach: float = 20.0, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """head: (h, w) probability that a pixel shows the head; covered: (h, w) bool, where
    ``head`` was predicted (None: everywhere); person: (h, w) probability that a pixel shows
    the person (None: the head's boundary is background everywhere). Returns (signed
    distance (h, w) float32 in pixels, negative inside; weight (h, w) float32 in {0, 1}).
    No trusted boundary: all weights 0."""
    import cv2

    head = np.asarray(head, np.float32)
    h, w = head.shape
    inside = (head >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=4)
    sdf = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    if count < 2:
        return sdf, weight
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    piece = (labels == largest).astype(np.uint8)
    # Fill holes: everything not reachable from the border through the outside.
    outside = np.pad(1 - piece, 1, constant_values=1)
    flood = outside.copy()
    cv2.floodFill(flood, None, (0, 0), 2)
    filled = (flood[1:-1, 1:-1] != 2).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    # The edge runs between the last pixels inside and the first outside: the signed
    # distance is measured from the pixel centres on the other side, less half a pixel.
    inner = (filled > 0) & (cv2.erode(filled, kernel) == 0)
    outer = (filled == 0) & (cv2.dilate(filled, kernel) > 0)
    known = np.ones((h, w), np.uint8) if covered is None else np.asarray(covered, np.uint8)
    known = np.pad(known, 1, constant_values=0)  # the photo's own edge is an edge too
    margin = np.ones((2 * EDGE_MARGIN_PX + 1, 2 * EDGE_MARGIN_PX + 1), np.uint8)
    predicted = cv2.erode(known, margin)[1:-1, 1:-1] > 0
    trusted_area = predicted.copy()
    if person is not None:
        background = (np.asarray(person, np.float32) < threshold).astype(np.uint8)
        near = np.ones((2 * BACKGROUND_NEAR_PX + 1, 2 * BACKGROUND_NEAR_PX + 1), np.uint8)
        trusted_area &= cv2.dilate(background, near) > 0
    if not (inner & trusted_area).any():
        return sdf, weight

    def distance(to: np.ndarray) -> np.ndarray:
        return cv2.distanceTransform((~to).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    to_trusted = np.where(filled > 0, distance(outer & trusted_area), distance(inner & trusted_area))
    # Any edge the outline could be confused with: the mask's whole boundary and the covered region's edge.
    to_any = distance(inner | outer | ~predicted)
    sdf = np.where(filled > 0, 0.5 - to_trusted, to_trusted - 0.5).astype(np.float32)
    weight = ((to_trusted <= to_any + 1.5) & (to_trusted <= reach)).astype(np.float32)
    return sdf, weight


def photo_outline(head: np.ndarray, covered: np.ndarray | None, rgb: np.ndarray | None,
                  max_res: int = OUTLINE_MAX_RES) -> tuple[np.ndarray, np.ndarray, float]:
    """The outline of a photo: ``head`` and ``covered`` are photo-sized masks as in
    ``outline_field``, ``rgb`` the photo (its ``person_mask`` decides what is background;
    None: all of it is). Worked at most ``max_res`` pixels on the long side, so memory
    does not grow with the photo. Returns (signed distance in photo pixels, weight, scale:
    field pixels per photo pixel)."""
    import cv2

    h, w = head.shape
    scale = min(1.0, max_res / max(h, w))
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    scale = size[0] / w

    def shrink(m):
        if m is None or scale == 1.0:
            return m
        return cv2.resize(np.asarray(m), size, interpolation=cv2.INTER_AREA)

    person = None if rgb is None else person_mask(shrink(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)))
    covered = None if covered is None else shrink(np.asarray(covered, np.float32)) > 0.999
    sdf, weight = outline_field(shrink(np.asarray(head, np.float32)), covered, person)
    return sdf / scale, weight, scale
