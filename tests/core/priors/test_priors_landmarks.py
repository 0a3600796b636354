"""MediaPipe landmarks on real photos: geometry, pixel frame, fallbacks, errors."""

from __future__ import annotations

import pathlib
import threading
import warnings

import cv2
import matplotlib
import numpy as np
import pytest
import skimage.data
from PIL import Image

from core.priors import (
    NUM_LANDMARKS,
    ImageError,
    MultipleFacesWarning,
    NoFaceError,
    Photo,
    describe,
    detect_faces,
    detect_landmarks,
    load_image,
)
from core.priors import landmarks as lm

GRACE_HOPPER = pathlib.Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return load_image(GRACE_HOPPER).rgb


def _detector_eyes(rgb: np.ndarray) -> np.ndarray:
    """Eye centres (2, 2) [subject right, subject left] from MediaPipe's face detector."""
    from mediapipe.python.solutions import face_detection

    with face_detection.FaceDetection(model_selection=1) as det:
        d = det.process(rgb).detections[0]
    kp = d.location_data.relative_keypoints
    h, w = rgb.shape[:2]
    return np.array([[kp[0].x * w, kp[0].y * h], [kp[1].x * w, kp[1].y * h]])


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_landmarks_on_real_photos(request, photo):
    rgb = request.getfixturevalue(photo)
    face = detect_landmarks(rgb)
    h, w = rgb.shape[:2]
    assert face.points.shape == (NUM_LANDMARKS, 2) and face.points.dtype == np.float32
    assert face.z.shape == (NUM_LANDMARKS,) and face.z.dtype == np.float32
    assert np.isfinite(face.points).all() and np.isfinite(face.z).all()
    assert face.image_size == (w, h)
    assert 0.5 <= face.confidence <= 1.0
    assert (face.points >= 0).all() and (face.points[:, 0] <= w).all() and (face.points[:, 1] <= h).all()
    p = face.points
    # Subject's right eye is on the image left; corners roughly level; inner corners inside outer.
    assert p[lm.RIGHT_EYE_OUTER, 0] < p[lm.RIGHT_EYE_INNER, 0] < p[lm.LEFT_EYE_INNER, 0] < p[lm.LEFT_EYE_OUTER, 0]
    iod = face.interocular
    assert 0.3 < iod / (face.bbox[2] - face.bbox[0]) < 0.8
    assert abs(p[lm.LEFT_EYE_OUTER, 1] - p[lm.RIGHT_EYE_OUTER, 1]) < 0.25 * iod
    # Nose tip below the eyes and between them; eyes in the upper half of the face box.
    eye_y = p[[lm.RIGHT_EYE_OUTER, lm.LEFT_EYE_OUTER], 1].mean()
    assert p[lm.NOSE_TIP, 1] > eye_y + 0.2 * iod
    assert p[lm.RIGHT_EYE_INNER, 0] < p[lm.NOSE_TIP, 0] < p[lm.LEFT_EYE_INNER, 0]
    assert eye_y < (face.bbox[1] + face.bbox[3]) / 2
    # Iris centres agree with the independent face detector's eye keypoints.
    eyes = _detector_eyes(rgb)
    iris = p[[lm.RIGHT_IRIS_CENTER, lm.LEFT_IRIS_CENTER]]
    assert np.linalg.norm(iris - eyes, axis=1).max() < 0.15 * iod
    # The nose tip is the nearest point (most negative relative depth) in the middle of the face.
    assert face.z[lm.NOSE_TIP] < np.median(face.z)
    assert "478 landmarks" in face.describe()
    summary = describe(Photo(rgb=rgb, name=photo), face)
    assert summary.splitlines()[0].startswith(photo) and "478 landmarks" in summary


def test_pixel_frame_mirror_and_scale(astronaut):
    w = astronaut.shape[1]
    face = detect_landmarks(astronaut)
    mirrored = detect_landmarks(np.ascontiguousarray(astronaut[:, ::-1]))
    # Continuous coordinates with centres at +0.5: mirroring maps x to W - x exactly.
    pairs = [(lm.RIGHT_EYE_OUTER, lm.LEFT_EYE_OUTER), (lm.RIGHT_EYE_INNER, lm.LEFT_EYE_INNER)]
    for a, b in pairs:
        assert abs((w - mirrored.points[a, 0]) - face.points[b, 0]) < 0.05 * face.interocular
    doubled = cv2.resize(astronaut, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    big = detect_landmarks(doubled)
    err = np.linalg.norm(big.points / 2 - face.points, axis=1)
    assert np.median(err) < 0.03 * face.interocular


def test_small_face_found_through_detector_crop(astronaut):
    canvas = np.full((1024, 1024, 3), 120, np.uint8)
    canvas[300:812, 400:912] = astronaut
    face = detect_landmarks(canvas)
    assert face.source == "detector_crop"
    ref = detect_landmarks(astronaut)
    err = np.linalg.norm(face.points - (ref.points + [400, 300]), axis=1)
    assert np.median(err) < 0.05 * ref.interocular
    assert face.image_size == (1024, 1024)


def test_two_faces_largest_by_default_and_choosable(astronaut, hopper):
    left = cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA)
    right = cv2.resize(hopper, (512, 600), interpolation=cv2.INTER_AREA)
    both = np.full((600, 912, 3), 200, np.uint8)
    both[100:500, :400] = left
    both[:, 400:] = right
    faces = detect_faces(both)
    assert len(faces) == 2
    assert faces[0].bbox[2] <= 400 <= faces[1].bbox[0]
    with pytest.warns(MultipleFacesWarning, match="2 faces"):
        largest = detect_landmarks(both)
    assert largest.bbox[0] >= 400
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(detect_landmarks(both, face_index=0).points, faces[0].points)
    with pytest.raises(NoFaceError, match="only 2 face"):
        detect_landmarks(both, face_index=2)


def test_no_face(astronaut):
    with pytest.raises(NoFaceError, match="no face found"):
        detect_landmarks(np.ascontiguousarray(astronaut[300:, 300:]))
    with pytest.raises(NoFaceError):
        detect_landmarks(np.full((64, 64, 3), 90, np.uint8))
    assert detect_faces(np.zeros((32, 48, 3), np.uint8)) == []


def test_exif_rotated_file_gives_upright_landmarks(tmp_path, hopper):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(hopper).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    photo = load_image(path)
    face = detect_landmarks(photo)
    ref = detect_landmarks(hopper)
    assert np.median(np.linalg.norm(face.points - ref.points, axis=1)) < 0.05 * ref.interocular


def test_bad_arrays_rejected():
    with pytest.raises(ImageError, match="uint8"):
        detect_landmarks(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        detect_landmarks(np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError, match="load_image"):
        detect_landmarks("photo.jpg")


def test_thread_safe(astronaut, hopper):
    expected = {0: detect_landmarks(astronaut).points, 1: detect_landmarks(hopper).points}
    results, errors = {}, []

    def work(k: int) -> None:
        try:
            results[k] = detect_landmarks(astronaut if k % 2 == 0 else hopper).points
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, pts in results.items():
        np.testing.assert_array_equal(pts, expected[k % 2])


def test_eye_corner_distance_is_the_outer_corners_distance():
    points = np.zeros((478, 2), np.float32)
    points[lm.RIGHT_EYE_OUTER], points[lm.LEFT_EYE_OUTER] = (100.0, 200.0), (160.0, 280.0)
    assert lm.eye_corner_distance(points) == pytest.approx(100.0)
    face = lm.FaceLandmarks(points, np.zeros(478, np.float32), np.zeros(4, np.float32), 1.0, (640, 480))
    assert face.interocular == lm.eye_corner_distance(points)
