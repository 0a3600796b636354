"""Per-view template correspondences: what each photo says about the mesh.

One ``ViewCorrespondences`` per view: C template-surface points (a triangle's
three vertex ids and barycentrics, so landmark embeddings and per-vertex UV
targets share one form), the pixel each is seen at, a confidence, and
optionally the point's 3D position in that camera's frame (a point map or
depth). Built from MediaPipe landmarks (``from_landmarks``, the default) or
from dense per-vertex targets of a UV provider (``from_vertex_targets``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.template import LMK_SURFACE, Template


@dataclass
class ViewCorrespondences:
    """One view's correspondences.

    vert_ids: (C, 3) int64 template vertex ids of each point's triangle.
    bary: (C, 3) float32 barycentrics (rows sum to 1).
    pixels: (C, 2) float32 observed pixels (OpenCV, centres at +0.5).
    weight: (C,) float32 confidence in [0, 1]; 0 = not seen.
    points_cam: (C, 3) float32 camera-frame positions in metres (point map), or None.
    point_weight: (C,) float32 confidence of ``points_cam``, or None.
    track_ids: (C,) int64 id shared by the same surface point in every view
        (landmark id, or vertex id for dense targets): the tracks of a
        classic point bundle adjustment.
    """

    width: int
    height: int
    vert_ids: np.ndarray
    bary: np.ndarray
    pixels: np.ndarray
    weight: np.ndarray
    track_ids: np.ndarray
    points_cam: np.ndarray | None = None
    point_weight: np.ndarray | None = None
    name: str = "view"

    def __post_init__(self):
        self.vert_ids = np.asarray(self.vert_ids, np.int64)
        self.bary = np.asarray(self.bary, np.float32)
        self.pixels = np.asarray(self.pixels, np.float32)
        self.weight = np.asarray(self.weight, np.float32)
        self.track_ids = np.asarray(self.track_ids, np.int64)
        c = len(self.vert_ids)
        if self.vert_ids.shape != (c, 3) or self.bary.shape != (c, 3):
            raise ValueError(f"{self.name}: vert_ids and bary must both be (C, 3), got "
                             f"{self.vert_ids.shape} and {self.bary.shape}")
        if self.pixels.shape != (c, 2) or self.weight.shape != (c,) or self.track_ids.shape != (c,):
            raise ValueError(f"{self.name}: pixels (C, 2), weight (C,) and track_ids (C,) must match C={c}")
        if not np.isfinite(self.pixels[self.weight > 0]).all():
            raise ValueError(f"{self.name}: correspondences contain NaN or infinite pixels")
        if self.points_cam is not None:
            self.points_cam = np.asarray(self.points_cam, np.float32)
            pw = np.ones(c, np.float32) if self.point_weight is None else np.asarray(self.point_weight, np.float32)
            if self.points_cam.shape != (c, 3) or pw.shape != (c,):
                raise ValueError(f"{self.name}: points_cam must be (C, 3) with point_weight (C,), C={c}")
            finite = np.isfinite(self.points_cam).all(1)
            self.points_cam = np.where(finite[:, None], self.points_cam, 0.0).astype(np.float32)
            self.point_weight = np.where(finite, pw, 0.0).astype(np.float32)

    @property
    def num_used(self) -> int:
        return int((self.weight > 0).sum())


def from_landmarks(template: Template, width: int, height: int, landmarks: np.ndarray, weight: np.ndarray,
                   name: str = "view") -> ViewCorrespondences:
    """The landmark embedding's surface points (silhouette points excluded: they slide with the view).

    landmarks: (L, 2) float32 detected pixels indexed like the template's
    embedding; weight: (L,) float32 confidence (0 = not seen).
    """
    if template.num_landmarks == 0:
        raise ValueError("the template has no landmark embedding; multi-view fitting needs one")
    if len(landmarks) != template.num_landmarks:
        raise ValueError(f"{name}: {len(landmarks)} landmarks, the template embeds {template.num_landmarks}")
    keep = np.flatnonzero(np.asarray(template.lmk_kind) == LMK_SURFACE)
    return ViewCorrespondences(
        width, height, template.tris[template.lmk_tri[keep]], template.lmk_bary[keep],
        landmarks[keep], weight[keep], keep, name=name,
    )


def from_vertex_targets(width: int, height: int, pixels: np.ndarray, valid: np.ndarray,
                        points_cam: np.ndarray | None = None, name: str = "view") -> ViewCorrespondences:
    """Dense correspondences: one target pixel per template vertex.

    pixels: (N, 2) float32 pixel of every template vertex (e.g. from
        ``core.priors.uv_targets.uv_map_to_vertex_targets``); valid: (N,) bool.
    points_cam: (N, 3) float32 camera-frame points at those pixels, or None.
    """
    pixels = np.asarray(pixels, np.float32)
    valid = np.asarray(valid, bool)
    n = len(pixels)
    if valid.shape != (n,):
        raise ValueError(f"{name}: valid must be ({n},), got {valid.shape}")
    ids = np.arange(n)
    bary = np.zeros((n, 3), np.float32)
    bary[:, 0] = 1.0
    return ViewCorrespondences(width, height, np.repeat(ids[:, None], 3, 1), bary,
                               np.where(valid[:, None], pixels, 0.0), valid.astype(np.float32), ids,
                               points_cam=points_cam, point_weight=None if points_cam is None else valid.astype(np.float32),
                               name=name)
