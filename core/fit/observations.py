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
            n = np.asarray(self.normals, dtype=np.float32)
            if n.ndim != 3 or n.shape[2] != 3:
                raise ValueError(f"{self.name}: normal map must be (h, w, 3), got {n.shape}")
            mask = (np.ones(n.shape[:2], np.float32) if self.normal_mask is None
                    else np.asarray(self.normal_mask, np.float32))
            if mask.shape != n.shape[:2]:
                raise ValueError(f"{self.name}: normal mask {mask.shape} does not match normals {n.shape[:2]}")
            finite = np.isfinite(n).all(-1) & np.isfinite(mask)
            self.normals = np.where(finite[..., None], n, 0.0).astype(np.float32)
            self.normal_mask = np.where(finite, np.clip(mask, 0.0, 1.0), 0.0).astype(np.float32)
        if self.uv_map is not None:
            uv = np.asarray(self.uv_map, dtype=np.float32)
            if uv.ndim != 3 or uv.shape[2] != 2:
                raise ValueError(f"{self.name}: UV map must be (h, w, 2), got {uv.shape}")
            weight = (np.ones(uv.shape[:2], np.float32) if self.uv_weight is None
                      else np.asarray(self.uv_weight, np.float32))
            if weight.shape != uv.shape[:2]:
                raise ValueError(f"{self.name}: UV weights {weight.shape} do not match the UV map {uv.shape[:2]}")
            finite = np.isfinite(uv).all(-1) & np.isfinite(weight)
            self.uv_map = np.where(finite[..., None], uv, 0.0).astype(np.float32)
            self.uv_weight = np.where(finite, np.clip(weight, 0.0, 1.0), 0.0).astype(np.float32)
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

    @property
    def normal_scale(self) -> float:
        """Normal-map pixels per image pixel."""
        if self.normals is None:
            return 1.0
        return self.normals.shape[1] / self.width
