"""bridge.conventions: projection, Blender camera conversion, normal encoding."""

from __future__ import annotations

import numpy as np
import pytest

from bridge import conventions as cv


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return cv.quaternion_to_rotation(q)


def look_at_camera(rng, fx, fy, cx, cy):
    """A world-to-camera (R, t) looking at the origin from about 0.6 m in front (-Y)."""
    R0 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # world -> OpenCV, camera on -Y
    small = cv.quaternion_to_rotation(np.r_[1.0, rng.normal(scale=0.2, size=3)])
    R = small @ R0
    t = np.array([0.0, 0.0, 0.6]) + rng.normal(scale=0.02, size=3)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, R, t


def blender_project(cam: cv.BlenderCamera, points: np.ndarray, sensor_height: float = 24.0) -> np.ndarray:
    """Blender's camera model written out: view plane at clip_start, window
    matrix, NDC, then pixels (rows from the top). Follows
    BKE_camera_params_compute_viewplane / perspective_m4."""
    clip_start, clip_end = 0.1, 100.0
    W, H = cam.resolution_x, cam.resolution_y
    aspx, aspy = cam.pixel_aspect_x, cam.pixel_aspect_y
    ycor = aspy / aspx
    fit = cam.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if aspx * W >= aspy * H else "VERTICAL"
    sensor_size = cam.sensor_width if fit == "HORIZONTAL" or cam.sensor_fit == "AUTO" else sensor_height
    pixsize = sensor_size * clip_start / cam.lens
    viewfac = W if fit == "HORIZONTAL" else ycor * H
    pixsize /= viewfac
    dx, dy = cam.shift_x * viewfac, cam.shift_y * viewfac
    xmin, xmax = (-0.5 * W + dx) * pixsize, (0.5 * W + dx) * pixsize
    ymin, ymax = (-0.5 * ycor * H + dy) * pixsize, (0.5 * ycor * H + dy) * pixsize
    # perspective_m4(left, right, bottom, top, near, far)
    P = np.zeros((4, 4))
    P[0, 0] = 2 * clip_start / (xmax - xmin)
    P[1, 1] = 2 * clip_start / (ymax - ymin)
    P[0, 2] = (xmax + xmin) / (xmax - xmin)
    P[1, 2] = (ymax + ymin) / (ymax - ymin)
    P[2, 2] = -(clip_end + clip_start) / (clip_end - clip_start)
    P[3, 2] = -1.0
    P[2, 3] = -2 * clip_start * clip_end / (clip_end - clip_start)
    view = np.linalg.inv(cam.matrix_world)
    homo = np.c_[points, np.ones(len(points))]
    clip = homo @ view.T @ P.T
    ndc = clip[:, :3] / clip[:, 3:4]
    u = (ndc[:, 0] + 1.0) * 0.5 * W
    v = (1.0 - ndc[:, 1]) * 0.5 * H
    return np.stack([u, v], axis=1)


@pytest.mark.parametrize(
    "fx, fy, cx, cy, W, H",
    [
        (500.0, 500.0, 128.0, 128.0, 256, 256),
        (800.0, 760.0, 300.5, 210.25, 640, 480),
        (700.0, 910.0, 170.0, 260.0, 360, 512),
    ],
)
def test_blender_camera_projects_like_opencv(fx, fy, cx, cy, W, H):
    rng = np.random.default_rng(1)
    K, R, t = look_at_camera(rng, fx, fy, cx, cy)
    cam = cv.opencv_to_blender_camera(K, R, t, W, H)
    assert cam.pixel_aspect_x >= 1.0 and cam.pixel_aspect_y >= 1.0
    points = rng.uniform(-0.12, 0.12, size=(50, 3))
    uv_cv, depth = cv.project_points_np(points, K, R, t)
    assert (depth > 0).all()
    uv_bl = blender_project(cam, points)
    np.testing.assert_allclose(uv_bl, uv_cv, atol=1e-7)


def test_blender_camera_round_trip_and_quaternion():
    rng = np.random.default_rng(2)
    K, R, t = look_at_camera(rng, 820.0, 790.0, 250.0, 270.0)
    cam = cv.opencv_to_blender_camera(K, R, t, 512, 512)
    np.testing.assert_allclose(cv.quaternion_to_rotation(cam.quaternion), cam.rotation, atol=1e-12)
    for rotation in (cam.rotation, cam.quaternion):
        K2, R2, t2 = cv.blender_to_opencv_camera(
            cam.location, rotation, cam.lens, cam.sensor_width, cam.shift_x, cam.shift_y,
            512, 512, cam.pixel_aspect_x, cam.pixel_aspect_y, sensor_fit=cam.sensor_fit,
        )
        np.testing.assert_allclose(K2, K, atol=1e-9)
        np.testing.assert_allclose(R2, R, atol=1e-9)
        np.testing.assert_allclose(t2, t, atol=1e-9)


@pytest.mark.parametrize("fit, W, H", [("AUTO", 640, 480), ("AUTO", 480, 640), ("VERTICAL", 400, 300)])
def test_blender_to_opencv_matches_blender_model(fit, W, H):
    """Cameras set up in Blender (any sensor fit) convert to an equivalent OpenCV camera."""
    rng = np.random.default_rng(3)
    rot = random_rotation(rng)
    loc = rng.normal(size=3)
    cam = cv.BlenderCamera(
        location=loc, rotation=rot, quaternion=cv.rotation_to_quaternion(rot), lens=42.0, sensor_width=36.0,
        sensor_fit=fit, shift_x=0.07, shift_y=-0.04, resolution_x=W, resolution_y=H,
        pixel_aspect_x=1.0, pixel_aspect_y=1.3,
    )
    K, R, t = cv.blender_to_opencv_camera(
        loc, rot, 42.0, 36.0, 0.07, -0.04, W, H, 1.0, 1.3, sensor_fit=fit, sensor_height=24.0
    )
    # points in front of the Blender camera (its -Z)
    local = np.c_[rng.uniform(-0.3, 0.3, size=(40, 2)), -rng.uniform(0.5, 3.0, size=40)]
    points = local @ rot.T + loc
    uv, depth = cv.project_points_np(points, K, R, t)
    np.testing.assert_allclose(depth, -local[:, 2], atol=1e-9)
    np.testing.assert_allclose(blender_project(cam, points), uv, atol=1e-7)


def test_rotation_quaternion_round_trip_all_branches():
    rng = np.random.default_rng(4)
    mats = [random_rotation(rng) for _ in range(50)]
    mats += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
    for R in mats:
        q = cv.rotation_to_quaternion(R)
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(cv.quaternion_to_rotation(q), R, atol=1e-12)


def test_project_points_pixel_centres_and_behind_camera():
    K = np.array([[100.0, 0, 16.0], [0, 100.0, 8.0], [0, 0, 1]])
    R, t = np.eye(3), np.zeros(3)
    uv, depth = cv.project_points_np([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]], K, R, t)
    # the optical axis hits the centre of a 32x16 image: between pixels 15 and 16
    np.testing.assert_allclose(uv[0], [16.0, 8.0])
    assert np.isfinite(uv).all()
    np.testing.assert_allclose(depth, [1.0, -1.0, 0.0])


def test_bad_cameras_are_rejected():
    K = np.array([[100.0, 0, 16.0], [0, 100.0, 8.0], [0, 0, 1]])
    with pytest.raises(ValueError, match="rotation"):
        cv.project_points_np(np.zeros((1, 3)), K, np.eye(3) * 2, np.zeros(3))
    with pytest.raises(ValueError, match="skew"):
        cv.opencv_to_blender_camera(K + np.array([[0, 3.0, 0], [0, 0, 0], [0, 0, 0]]), np.eye(3), np.zeros(3), 32, 16)
    with pytest.raises(ValueError, match="shape"):
        cv.project_points_np(np.zeros((4, 2)), K, np.eye(3), np.zeros(3))


def test_normal_encoding_round_trip():
    rng = np.random.default_rng(5)
    n = rng.normal(size=(8, 8, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    img8 = cv.encode_normals(n)
    assert img8.dtype == np.uint8
    assert np.abs(cv.decode_normals(img8) - n).max() < 0.01
    imgf = cv.encode_normals(n, dtype=np.float32)
    np.testing.assert_allclose(imgf, n * 0.5 + 0.5, atol=1e-6)
    np.testing.assert_allclose(cv.decode_normals(imgf), n, atol=1e-6)
    # a camera-facing normal (n_z < 0) encodes to blue < 0.5
    assert cv.encode_normals(np.array([0.0, 0.0, -1.0]))[2] == 0
    mask = np.zeros((8, 8), bool)
    masked = cv.encode_normals(n, mask=mask)
    assert (masked == 128).all()
    assert (cv.decode_normals(masked) == 0).all()
