"""What one view tells the fitter: landmarks, optional normal map, the
photo's pixels with its skin mask, image size.

Built from photos (MediaPipe landmarks + any user-supplied maps) by
``core.fit.pipeline`` or directly by the synthetic benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Normal maps are fitted at most this many pixels on their long side: the
# rasteriser's cost grows with pixels, and normals carry little above it.
MAX_NORMAL_RES = 256
# The photo is kept for the shading term at most this many pixels on its long
# side (twice the finest comparison, so area-averaging has pixels to average).
MAX_IMAGE_RES = 2 * MAX_NORMAL_RES


@dataclass
class ViewObservation:
    """One view.

    width, height: image size in pixels (the camera's frame).
    landmarks: (L, 2) float32 detected pixels (x right, y down, centres +0.5),
        indexed like the template's landmark embedding (MediaPipe's 478).
    landmark_weight: (L,) float32 confidence in [0, 1] (0 = not seen).
    normals: (h, w, 3) float32 camera-space normals (OpenCV axes, visible
        n_z < 0) or None; may be smaller than the image (same aspect).
    normal_mask: (h, w) weights in [0, 1] of ``normals`` (bool: valid or not; a cue
        provider's confidence), or None (all valid).
    image: (h, w, 3) float32 linear-light RGB of the photo in [0, 1], or None;
        may be smaller than the photo (same aspect).
    skin: (h, w) bool, the skin pixels of ``image`` the shading term compares
        (``core.priors.skin.skin_mask``), or None.
    image_scale: pixels of ``image`` per photo pixel (0: its width over the photo's).
    name: for messages and reports.
    focal_px: the camera's focal length in image pixels when known (EXIF, or
        given by the user), else None (the fit estimates it).
    focal_source: where ``focal_px`` came from ("exif", "given"); empty means
        "given" when ``focal_px`` is set and "estimated" when not.
    cue_source: where ``normals`` came from (a cue provider's description), or "".
    cues_predicted: the cues are a network's estimate (not measured maps): the schedule
        treats them as a weaker cue (``schedule_for``).
    uv_map: (h, w, 2) float32 template UV per photo pixel (a cue provider's), or None.
    uv_weight: (h, w) weights in [0, 1] of ``uv_map`` (0: no UV there), or None (all valid).
    landmark_heldout: (L,) bool, the detected points left out of the objective to check the
        fit against (``FitOptions.holdout_landmarks``), or None.
    outline: (h, w) float32 signed distance in photo pixels to the head's outer silhouette
        (negative inside; ``core.priors.outline.outline_field``), or None; may be smaller than
        the photo (same aspect).
    outline_weight: (h, w) float32 in [0, 1], where ``outline`` may be trusted (None: everywhere).
    outline_scale: pixels of ``outline`` per photo pixel (0: its width over the photo's).
    """

    width: int
    height: int
    landmarks: np.ndarray
    landmark_weight: np.ndarray
    normals: np.ndarray | None = None
    normal_mask: np.ndarray | None = None
    name: str = "view"
    image: np.ndarray | None = None
    skin: np.ndarray | None = None
    image_scale: float = 0.0
    focal_px: float | None = None
    focal_source: str = ""
    cue_source: str = ""
    cues_predicted: bool = False
    uv_map: np.ndarray | None = None
    uv_weight: np.ndarray | None = None
    landmark_heldout: np.ndarray | None = None
    outline: np.ndarray | None = None
    outline_weight: np.ndarray | None = None
    outline_scale: float = 0.0

    def __post_init__(self):
        if self.focal_px is not None:
            f = float(self.focal_px)
            if not (np.isfinite(f) and f > 0):
                raise ValueError(f"{self.name}: focal length must be a positive number of pixels, got {self.focal_px}")
            self.focal_px = f
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        self.landmark_weight = np.asarray(self.landmark_weight, dtype=np.float32)
        if self.landmarks.ndim != 2 or self.landmarks.shape[1] != 2:
            raise ValueError(f"{self.name}: landmarks must be (L, 2), got {self.landmarks.shape}")
        if self.landmark_weight.shape != self.landmarks.shape[:1]:
            raise ValueError(f"{self.name}: landmark_weight must be ({len(self.landmarks)},)")
        if not np.isfinite(self.landmarks[self.landmark_weight > 0]).all():
            raise ValueError(f"{self.name}: landmarks contain NaN or infinity")
        if self.normals is not None:
            self.normals, self.normal_mask = self._weighted_map(self.normals, self.normal_mask, 3, "normal map",
                                                                "normal mask", "normals")
        if self.uv_map is not None:
            self.uv_map, self.uv_weight = self._weighted_map(self.uv_map, self.uv_weight, 2, "UV map", "UV weights",
                                                             "the UV map")
        if self.outline is not None:
            sdf, wt = self._weighted_map(np.asarray(self.outline, np.float32)[..., None], self.outline_weight, 1,
                                         "outline", "outline weights", "the outline")
            self.outline, self.outline_weight = sdf[..., 0], wt
            if not self.outline_scale:
                self.outline_scale = sdf.shape[1] / self.width
        if self.image is not None:
            img = np.asarray(self.image, dtype=np.float32)
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"{self.name}: image must be (h, w, 3), got {img.shape}")
            skin = np.ones(img.shape[:2], bool) if self.skin is None else np.asarray(self.skin, bool)
            if skin.shape != img.shape[:2]:
                raise ValueError(f"{self.name}: skin mask {skin.shape} does not match the image {img.shape[:2]}")
            finite = np.isfinite(img).all(-1)
            self.image = np.where(finite[..., None], img, 0.0).astype(np.float32)
            self.skin = skin & finite
            if not self.image_scale:
                self.image_scale = img.shape[1] / self.width

    def _weighted_map(self, values, weights, channels: int, what: str, weights_what: str, against: str):
        """A per-pixel cue map (h, w, channels) and its weights (h, w) in [0, 1] (None: all 1), checked;
        pixels where either is not finite get value 0 and weight 0."""
        v = np.asarray(values, dtype=np.float32)
        if v.ndim != 3 or v.shape[2] != channels:
            raise ValueError(f"{self.name}: {what} must be (h, w, {channels}), got {v.shape}")
        w = np.ones(v.shape[:2], np.float32) if weights is None else np.asarray(weights, np.float32)
        if w.shape != v.shape[:2]:
            raise ValueError(f"{self.name}: {weights_what} {w.shape} do not match {against} {v.shape[:2]}")
        finite = np.isfinite(v).all(-1) & np.isfinite(w)
        return (np.where(finite[..., None], v, 0.0).astype(np.float32),
                np.where(finite, np.clip(w, 0.0, 1.0), 0.0).astype(np.float32))

    @property
    def normal_scale(self) -> float:
        """Normal-map pixels per image pixel."""
        if self.normals is None:
            return 1.0
        return self.normals.shape[1] / self.width
