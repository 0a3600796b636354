"""Units and coordinate conventions: the one module that owns them.

Standard library + numpy only (the add-on uses it inside Blender to build a
Blender camera matching an OpenCV camera; the core mirrors the projection
with gradients in ``core/geometry/camera.py``).

World
    Blender's frame, metres: Z up, the face looks toward -Y, the subject's
    left is +X.
Cameras
    OpenCV pinhole: camera axes x right, y down, z forward. ``K`` (3, 3) in
    pixels, world-to-camera ``R`` (3, 3) and ``t`` (3,):
    ``x_cam = R @ x_world + t``; ``(u, v) = (fx x/z + cx, fy y/z + cy)``.
Pixels
    Pixel (column ``i``, row ``j``) covers ``[i, i+1) x [j, j+1)`` in
    continuous image coordinates; its centre is ``(i + 0.5, j + 0.5)``. A
    centred camera therefore has ``cx = width / 2``, ``cy = height / 2``.
    Blender's renderer uses the same pixel footprint.
Normal maps
    Camera-space unit normals in OpenCV axes; surfaces facing the camera
    have ``n_z < 0``. Stored as images they are ``n * 0.5 + 0.5``.
Blender cameras
    A Blender camera looks down its local -Z with +Y up, so the OpenCV
    camera axes map to Blender camera axes by ``diag(1, -1, -1)``. We always
    use ``sensor_fit = 'HORIZONTAL'`` so the focal length in pixels is
    ``lens / sensor_width * width``; unequal fx, fy become a pixel aspect
    ratio and the principal point becomes lens shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNITS = "m"
WORLD_UP = np.array([0.0, 0.0, 1.0])
FACE_FORWARD = np.array([0.0, -1.0, 0.0])
SUBJECT_LEFT = np.array([1.0, 0.0, 0.0])

PIXEL_CENTER_OFFSET = 0.5
"""Continuous coordinate of pixel ``i``'s centre is ``i + PIXEL_CENTER_OFFSET``."""

OPENCV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])
"""Maps OpenCV camera axes (x right, y down, z forward) to Blender camera axes
(x right, y up, looking down -z); it is its own inverse."""

MIN_DEPTH = 1e-6
"""Points closer than this (metres, along the camera's z) are treated as being
at this depth when projected, so projections stay finite."""

DEFAULT_SENSOR_WIDTH_MM = 36.0
"""Blender's default sensor width; any value works, the lens scales with it."""


@dataclass(frozen=True)
class BlenderCamera:
    """The parameters of a Blender camera object and scene render settings.

    ``rotation`` is the camera-to-world rotation of the Blender camera object
    (its columns are the camera's x, y, z axes in world coordinates),
    ``quaternion`` the same rotation as (w, x, y, z) for
    ``rotation_quaternion``. Lengths in metres, lens and sensor in mm.
    """

    location: np.ndarray  # (3,) float64
    rotation: np.ndarray  # (3, 3) float64
    quaternion: np.ndarray  # (4,) float64, w x y z
    lens: float
    sensor_width: float
    sensor_fit: str
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float
    pixel_aspect_y: float

    @property
    def matrix_world(self) -> np.ndarray:
        """(4, 4) float64 object matrix for ``camera_object.matrix_world``."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.location
        return m


def _check_camera(K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    K = np.asarray(K, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"expected K (3, 3), R (3, 3), t (3,); got {K.shape}, {R.shape}, {t.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError("R must be a proper rotation matrix (orthonormal, det +1)")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if abs(K[0, 1]) > 1e-9 * K[0, 0] or not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise ValueError("K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)")
    return K, R, t


def project_points_np(points, K, R, t) -> tuple[np.ndarray, np.ndarray]:
    """Project world points through an OpenCV camera.

    points: (..., 3) world coordinates; K, R: (3, 3); t: (3,).
    Returns ``uv`` (..., 2) continuous pixel coordinates (pixel ``i`` spans
    ``[i, i+1)``) and ``depth`` (...,) camera z. Points closer than
    ``MIN_DEPTH`` are projected as if at ``MIN_DEPTH``: finite but meaningless;
    check ``depth > 0``.
    """
    K, R, t = _check_camera(K, R, t)
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    cam = points @ R.T + t
    depth = cam[..., 2]
    z = np.maximum(depth, MIN_DEPTH)
    u = K[0, 0] * cam[..., 0] / z + K[0, 2]
    v = K[1, 1] * cam[..., 1] / z + K[1, 2]
    return np.stack([u, v], axis=-1), depth


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (4,) unit quaternion (w, x, y, z), w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    # Pick the largest diagonal term for a well-conditioned square root.
    trace = np.trace(R)
    cands = np.array([trace, R[0, 0], R[1, 1], R[2, 2]])
    k = int(np.argmax(cands))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quaternion_to_rotation(q) -> np.ndarray:
    """(4,) quaternion (w, x, y, z), any norm > 0 -> (3, 3) rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def opencv_to_blender_camera(
    K, R, t, width: int, height: int, sensor_width: float = DEFAULT_SENSOR_WIDTH_MM
) -> BlenderCamera:
    """The Blender camera that renders exactly what an OpenCV camera sees.

    K, R: (3, 3); t: (3,) world-to-camera (``x_cam = R x_world + t``);
    width, height: image size in pixels. Uses ``sensor_fit='HORIZONTAL'``.
    """
    K, R, t = _check_camera(K, R, t)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Blender scales rows by ycor = pixel_aspect_y / pixel_aspect_x; fy = fx / ycor.
    ycor = fx / fy
    # Blender requires pixel aspects >= 1.
    aspect_x, aspect_y = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    rotation = R.T @ OPENCV_TO_BLENDER_CAMERA
    return BlenderCamera(
        location=-R.T @ t,
        rotation=rotation,
        quaternion=rotation_to_quaternion(rotation),
        lens=float(fx * sensor_width / width),
        sensor_width=float(sensor_width),
        sensor_fit="HORIZONTAL",
        shift_x=float((width / 2.0 - cx) / width),
        shift_y=float((cy - height / 2.0) * ycor / width),
        resolution_x=int(width),
        resolution_y=int(height),
        pixel_aspect_x=float(aspect_x),
        pixel_aspect_y=float(aspect_y),
    )


def blender_to_opencv_camera(
    location,
    rotation,
    lens: float,
    sensor_width: float,
    shift_x: float,
    shift_y: float,
    width: int,
    height: int,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    sensor_fit: str = "AUTO",
    sensor_height: float = 24.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV ``(K, R, t)`` of a Blender camera (inverse of ``opencv_to_blender_camera``).

    location: (3,) world position; rotation: (3, 3) camera-to-world matrix or
    (4,) quaternion (w, x, y, z); lens, sensor sizes in mm; shifts as in
    Blender; width, height: render resolution (after percentage scaling).
    Follows Blender's view-plane rules for ``sensor_fit`` AUTO, HORIZONTAL and
    VERTICAL.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    rot = quaternion_to_rotation(rotation) if rotation.shape == (4,) else rotation
    if rot.shape != (3, 3):
        raise ValueError(f"rotation must be (3, 3) or a (4,) quaternion, got {rotation.shape}")
    if sensor_fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
        raise ValueError(f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL, got {sensor_fit!r}")
    ycor = pixel_aspect_y / pixel_aspect_x
    if sensor_fit == "AUTO":
        horizontal = pixel_aspect_x * width >= pixel_aspect_y * height
        sensor = sensor_width
    else:
        horizontal = sensor_fit == "HORIZONTAL"
        sensor = sensor_width if horizontal else sensor_height
    viewfac = width if horizontal else ycor * height
    fx = lens * viewfac / sensor
    K = np.array(
        [
            [fx, 0.0, width / 2.0 - shift_x * viewfac],
            [0.0, fx / ycor, height / 2.0 + shift_y * viewfac / ycor],
            [0.0, 0.0, 1.0],
        ]
    )
    R = OPENCV_TO_BLENDER_CAMERA @ rot.T
    t = -R @ np.asarray(location, dtype=np.float64)
    return K, R, t


def encode_normals(normals, dtype=np.uint8, mask=None) -> np.ndarray:
    """Unit normals (..., 3) in [-1, 1] -> image ``n * 0.5 + 0.5``.

    dtype: ``np.uint8`` (0..255, rounded) or a float dtype (0..1).
    mask: optional (...,) bool; pixels outside it encode the zero vector (0.5 grey).
    """
    n = np.asarray(normals, dtype=np.float64)
    if n.shape[-1] != 3:
        raise ValueError(f"normals must have shape (..., 3), got {n.shape}")
    if mask is not None:
        n = np.where(np.asarray(mask, dtype=bool)[..., None], n, 0.0)
    img = np.clip(n * 0.5 + 0.5, 0.0, 1.0)
    if np.dtype(dtype) == np.uint8:
        return np.round(img * 255.0).astype(np.uint8)
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"dtype must be uint8 or a float type, got {np.dtype(dtype)}")
    return img.astype(dtype)


def decode_normals(image, normalize: bool = True) -> np.ndarray:
    """Image (..., 3) uint8 (0..255) or float (0..1) -> normals (..., 3) float64.

    With ``normalize`` the result is rescaled to unit length; vectors shorter
    than 0.5 (background, encoded as grey) decode to zero.
    """
    img = np.asarray(image)
    if img.shape[-1] != 3:
        raise ValueError(f"normal image must have shape (..., 3), got {img.shape}")
    x = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    n = x * 2.0 - 1.0
    if normalize:
        norm = np.linalg.norm(n, axis=-1, keepdims=True)
        n = np.where(norm > 0.5, n / np.maximum(norm, 0.5), 0.0)
    return n
