"""Square face crops and the affine maps between crop and photo pixels.

Pixel coordinates are continuous with pixel centres at +0.5 (pixel (0, 0)
spans [0, 1]²), x right, y down. OpenCV's warp functions put pixel centres at
integers; ``crop_square`` converts between the two so a point mapped into the
crop and back lands where it started.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Crop:
    """A square crop resampled to ``size`` x ``size`` pixels.

    rgb: (S, S, 3) uint8, the crop (outside the photo is filled with ``fill``).
    origin: (2,) float64, photo pixel coordinate of the crop's top-left corner.
    scale: crop pixels per photo pixel.
    """

    rgb: np.ndarray
    origin: np.ndarray
    scale: float

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Crop pixel coordinates (..., 2) float -> photo pixel coordinates (..., 2) float32."""
        return (np.asarray(points, np.float64) / self.scale + self.origin).astype(np.float32)

    def from_image(self, points: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates (..., 2) float -> crop pixel coordinates (..., 2) float32."""
        return ((np.asarray(points, np.float64) - self.origin) * self.scale).astype(np.float32)


def crop_square(
    rgb: np.ndarray,
    center: np.ndarray | tuple[float, float],
    side: float,
    size: int,
    *,
    fill: int = 0,
) -> Crop:
    """Cut a square of ``side`` photo pixels around ``center`` and resample it to ``size``².

    rgb: (H, W, C) uint8 photo. center: (2,) photo pixel coordinate (x, y).
    Areas outside the photo are filled with ``fill``. Uses area averaging when
    shrinking and bilinear interpolation when enlarging.
    """
    if side <= 0 or size <= 0:
        raise ValueError(f"crop side and size must be positive, got side={side}, size={size}")
    cx, cy = float(center[0]), float(center[1])
    origin = np.array([cx - side / 2.0, cy - side / 2.0], np.float64)
    s = size / float(side)
    if s < 1.0:
        # warpAffine has no area filter: shrink the whole photo first, then warp.
        dsize = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
        src = cv2.resize(rgb, dsize, interpolation=cv2.INTER_AREA)
    else:
        src = rgb
    # Source continuous coords are photo coords times (fx, fy); the crop's are
    # u = s (x - x0). OpenCV's coords are the continuous ones minus 0.5.
    fx = src.shape[1] / rgb.shape[1]
    fy = src.shape[0] / rgb.shape[0]
    matrix = np.array(
        [
            [s / fx, 0.0, 0.5 * s / fx - s * origin[0] - 0.5],
            [0.0, s / fy, 0.5 * s / fy - s * origin[1] - 0.5],
        ],
        np.float64,
    )
    out = cv2.warpAffine(
        np.ascontiguousarray(src),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill, fill, fill, fill),
    )
    if out.ndim == 2:
        out = out[..., None]
    return Crop(rgb=out, origin=origin, scale=s)
