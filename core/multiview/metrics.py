"""Camera accuracy against ground truth, up to the similarity gauge of any multi-view solve."""

from __future__ import annotations

import numpy as np


def rotation_errors_deg(R_est: np.ndarray, R_gt: np.ndarray, align_R: np.ndarray | None = None) -> np.ndarray:
    """Angle (degrees) of R_gt⁻¹ · R_est · align_Rᵀ per view.

    R_est, R_gt: (V, 3, 3) world-to-camera rotations. align_R: (3, 3) rotation
    of the similarity that maps the estimate's world onto the ground truth's
    (x_gt ≈ s · align_R · x_est + t), or None when the frames already agree.
    """
    R_est = np.asarray(R_est, np.float64)
    R_gt = np.asarray(R_gt, np.float64)
    if R_est.shape != R_gt.shape or R_est.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must both be (V, 3, 3), got {R_est.shape} and {R_gt.shape}")
    if align_R is not None:
        R_est = R_est @ np.asarray(align_R, np.float64).T
    rel = np.swapaxes(R_gt, -1, -2) @ R_est
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
