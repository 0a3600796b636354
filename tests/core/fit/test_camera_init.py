"""PnP initialisation recovers a known camera from exact and noisy projections."""

import numpy as np
import pytest
import torch

from bridge.conventions import project_points_np
from core.fit.camera_init import solve_pnp
from core.geometry.camera import axis_angle_to_matrix


def head_points(n=120, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p = p[p[:, 1] < 0.2]  # the front of an ellipsoid head, facing -Y
    return p * [0.075, 0.1, 0.11]


def look_at_face(yaw_deg, pitch_deg, dist):
    """World-to-camera for a camera in front of the face (-Y side), OpenCV axes."""
    base = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # world Z up -> camera y down; camera looks along +Y
    turn = axis_angle_to_matrix(torch.tensor(np.radians([[0, 0, yaw_deg], [pitch_deg, 0, 0]]))).numpy()
    R = base @ turn[0] @ turn[1]
    t = np.array([0.0, 0.0, dist])
    return R, t


@pytest.mark.parametrize("yaw,pitch", [(0, 0), (25, -10), (-30, 12)])
def test_recovers_pose(yaw, pitch):
    X = head_points()
    R, t = look_at_face(yaw, pitch, 0.8)
    f, W, H = 1200.0, 640, 480
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    x = project_points_np(X, K, R, t)[0] + np.random.default_rng(1).normal(scale=0.5, size=(len(X), 2))
    cam, rms_px = solve_pnp(X, x, (W, H))
    assert rms_px < 2.0
    assert (cam.width, cam.height, cam.dtype) == (W, H, torch.float64)
    K_got, R_got, t_got = cam.numpy()
    angle = np.degrees(np.arccos(np.clip((np.trace(R_got.T @ R) - 1) / 2, -1, 1)))
    assert angle < 3.0
    # Depth and focal trade off; their ratio (the image scale) is what is observable.
    assert K_got[0, 0] / t_got[2] == pytest.approx(f / t[2], rel=0.05)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 6"):
        solve_pnp(np.zeros((3, 3)), np.zeros((3, 2)), (100, 100))
    X = head_points()
    x = np.zeros((len(X), 2))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve_pnp(X, x, (100, 100))
