"""core.geometry.camera: the torch camera agrees with bridge.conventions' numpy projection and
Blender conversion; look-at, orbit, scaling and rays; axis-angle round trips; gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bridge import conventions as cv
from core.geometry.camera import Cameras, axis_angle_to_matrix, matrix_to_axis_angle, project_camera_points

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_cameras(rng, batch: int, width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K (B, 3, 3), R (B, 3, 3), t (B, 3)) float64: unequal focals, off-centre principal points,
    random rotations, the origin 0.5-1.5 m in front."""
    K = np.zeros((batch, 3, 3))
    K[:, 0, 0] = rng.uniform(400, 1500, batch)
    K[:, 1, 1] = K[:, 0, 0] * rng.uniform(0.8, 1.25, batch)
    K[:, 0, 2] = width / 2 + rng.uniform(-40, 40, batch)
    K[:, 1, 2] = height / 2 + rng.uniform(-40, 40, batch)
    K[:, 2, 2] = 1.0
    R = np.stack([cv.quaternion_to_rotation(q) for q in rng.normal(size=(batch, 4))])
    t = np.stack([rng.uniform(-0.1, 0.1, batch), rng.uniform(-0.1, 0.1, batch), rng.uniform(0.5, 1.5, batch)], 1)
    return K, R, t


@pytest.mark.parametrize("device", DEVICES)
def test_projection_agrees_with_bridge_conventions(device):
    rng = np.random.default_rng(0)
    K, R, t = random_cameras(rng, 4)
    points = rng.normal(0, 0.15, (4, 200, 3))
    points[:, :3] = -(np.swapaxes(R, 1, 2) @ t[..., None])[..., 0][:, None]  # at each camera centre: clamped depth
    cams = Cameras.from_numpy(K, R, t, 640, 480, device=device)
    uv, depth = cams.project(torch.as_tensor(points, device=device))
    for b in range(4):
        uv_np, depth_np = cv.project_points_np(points[b], K[b], R[b], t[b])
        np.testing.assert_allclose(uv[b].cpu().numpy(), uv_np, atol=1e-6, rtol=0)
        np.testing.assert_allclose(depth[b].cpu().numpy(), depth_np, atol=1e-12, rtol=0)


def test_blender_conversion_agrees_with_the_torch_camera():
    """bridge's OpenCV -> Blender camera sits at the torch camera's centre with its axes, and
    converting back projects the same pixels through the torch camera."""
    rng = np.random.default_rng(1)
    K, R, t = random_cameras(rng, 3, 500, 700)
    cams = Cameras.from_numpy(K, R, t, 500, 700)
    centres = cams.centers().numpy()
    points = torch.as_tensor(rng.normal(0, 0.1, (3, 50, 3)))
    uv, _ = cams.project(points)
    for b in range(3):
        blender = cv.opencv_to_blender_camera(K[b], R[b], t[b], 500, 700)
        np.testing.assert_allclose(blender.location, centres[b], atol=1e-12)
        np.testing.assert_allclose(blender.rotation, R[b].T @ cv.OPENCV_TO_BLENDER_CAMERA, atol=1e-12)
        back = cv.blender_to_opencv_camera(
            blender.location, blender.quaternion, blender.lens, blender.sensor_width, blender.shift_x,
            blender.shift_y, 500, 700, blender.pixel_aspect_x, blender.pixel_aspect_y, blender.sensor_fit)
        uv_back, _ = Cameras.from_numpy(*back, 500, 700).project(points[b:b + 1])
        np.testing.assert_allclose(uv_back[0].numpy(), uv[b].numpy(), atol=1e-6, rtol=0)


def test_look_at_looks_at_the_target():
    eye, target = np.array([0.3, -0.8, 0.25]), np.array([0.02, 0.01, 0.1])
    cam = Cameras.look_at(eye, target, 700.0, 320, 240)
    K, R, t = cam.numpy()
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(cam.centers()[0].numpy(), eye, atol=1e-12)
    uv, depth = cam.project(torch.as_tensor(np.stack([target, target + [0, 0, 0.05]]))[None])
    np.testing.assert_allclose(uv[0, 0].numpy(), [160.0, 120.0], atol=1e-9)  # the image centre
    assert float(depth[0, 0]) == pytest.approx(np.linalg.norm(target - eye))
    assert float(uv[0, 1, 1]) < 120.0  # world up is image up
    with pytest.raises(ValueError, match="coincide"):
        Cameras.look_at(eye, eye, 700.0, 32, 32)
    with pytest.raises(ValueError, match="parallel"):
        Cameras.look_at((0, 0, 1), (0, 0, 0), 500.0, 10, 10)


def test_orbit_positions_and_yaw_sign():
    cam = Cameras.orbit((0.1, 0.0, 0.0), 2.0, 30.0, 10.0, 500.0, 64, 64, dtype=torch.float32)
    assert cam.dtype == torch.float32 and cam.batch_size == 1
    yaw, pitch = math.radians(30.0), math.radians(10.0)
    expected = [0.1, 0.0, 0.0] + 2.0 * np.array([math.sin(yaw) * math.cos(pitch), -math.cos(yaw) * math.cos(pitch),
                                                  math.sin(pitch)])
    np.testing.assert_allclose(cam.centers()[0].numpy(), expected, atol=1e-6)
    front = Cameras.orbit((0.0, 0.0, 0.0), 1.0, 0.0, 0.0, 500.0, 64, 64)
    uv, _ = front.project(torch.tensor([[[0.1, 0.0, 0.0]]], dtype=torch.float64))
    assert float(uv[0, 0, 0]) > 32.0  # the subject's left (+X) is image right in a front view


def test_scaled_indexing_and_numpy():
    rng = np.random.default_rng(2)
    K, R, t = random_cameras(rng, 3)
    cams = Cameras.from_numpy(K, R, t, 640, 480)
    points = torch.as_tensor(rng.normal(0, 0.1, (3, 20, 3)))
    half = cams.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    np.testing.assert_allclose(half.project(points)[0].numpy(), 0.5 * cams.project(points)[0].numpy(), atol=1e-9)
    assert cams.scaled(1e-4).width == 1  # never an empty image
    one = cams[1]
    assert one.batch_size == 1 and (one.width, one.height) == (640, 480)
    K1, R1, t1 = one.numpy()
    np.testing.assert_array_equal(K1, K[1])
    K1[0, 0] = -1.0  # a copy: the camera is untouched
    assert float(one.K[0, 0, 0]) == K[1, 0, 0]
    np.testing.assert_array_equal(Cameras.from_numpy(K[1], R[1], t[1], 640, 480).R[0].numpy(), R[1])
    with pytest.raises(ValueError, match=r"K must be \(B, 3, 3\)"):
        Cameras(torch.eye(3), torch.eye(3)[None], torch.zeros(1, 3), 8, 8)


def test_rays_invert_projection():
    rng = np.random.default_rng(3)
    K, R, t = random_cameras(rng, 2)
    cams = Cameras.from_numpy(K, R, t, 640, 480)
    points = torch.as_tensor(rng.normal(0, 0.1, (2, 30, 3)))
    uv, _ = cams.project(points)
    dirs = cams.rays(uv)
    offset = points - cams.centers()[:, None]
    along = (offset * dirs).sum(-1, keepdim=True)
    torch.testing.assert_close(cams.centers()[:, None] + along * dirs, points, atol=1e-12, rtol=0)


def test_axis_angle_round_trip():
    rng = np.random.default_rng(4)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0.0, math.pi - 1e-3, 190), [0.0, 1e-9, 1e-5, math.pi - 1e-7, math.pi] * 2])
    w = torch.as_tensor(axes * angles[:, None])
    R = axis_angle_to_matrix(w)
    np.testing.assert_allclose((R @ R.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    back = matrix_to_axis_angle(R)
    # Away from pi the vector comes back; at pi, w and -w are the same rotation.
    regular = angles < math.pi - 1e-3
    torch.testing.assert_close(back[regular], w[regular], atol=1e-9, rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(back), R, atol=1e-7, rtol=0)
    assert float(back.norm(dim=-1).max()) <= math.pi + 1e-12


def test_projection_gradcheck():
    rng = np.random.default_rng(5)
    K, R, t = random_cameras(rng, 2)
    cam = torch.as_tensor(rng.normal(0, 0.1, (2, 5, 3)) + [0.0, 0.0, 1.0]).requires_grad_(True)
    Kt = torch.as_tensor(K).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, k: project_camera_points(c, k)[0], (cam, Kt))
    w = torch.as_tensor(rng.normal(size=(4, 3))).requires_grad_(True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (w,))
