"""Dense 2D face landmarks (MediaPipe FaceMesh, 478 points with irises).

FaceMesh's own detector is short-range: it misses small and profile faces.
Every photo is therefore also searched with MediaPipe's full-range face
detector; each face it finds that FaceMesh did not is cut out 2x around its
box, enlarged, meshed, and its points mapped back into the photo.

Points are in the photo's pixel frame: x right, y down, continuous
coordinates with pixel centres at +0.5 (pixel (0, 0) spans [0, 1]²).

The MediaPipe graphs are created once per process (slow to build) and shared;
a lock serialises their use, so the functions here are thread-safe.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from .crop import crop_square
from .errors import ImageError, MultipleFacesWarning, NoFaceError
from .image import Photo

NUM_LANDMARKS = 478
# Faces FaceMesh reports per pass; more are found through detector crops.
MAX_FACES = 8
# Side of the enlarged crop a missed face is meshed in, in pixels.
CROP_SIZE = 384
# The crop spans this many times the detector box (FaceMesh wants context).
CROP_FACTOR = 2.0
MIN_DETECTION_CONFIDENCE = 0.5
# A detection belongs to a meshed face when it overlaps its landmark box this much.
_MATCH_IOU = 0.2

# MediaPipe FaceMesh indices of the eye corners (subject's right eye is on the
# image left in a frontal photo) and the nose tip.
RIGHT_EYE_OUTER = 33
RIGHT_EYE_INNER = 133
LEFT_EYE_INNER = 362
LEFT_EYE_OUTER = 263
NOSE_TIP = 1
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473


def eye_corner_distance(points: np.ndarray) -> float:
    """Distance between the outer eye corners (FaceMesh 33 and 263): a face's scale in an image.

    points: (478, 2) (or 468) FaceMesh landmarks, pixels. Returns pixels.
    """
    return float(np.linalg.norm(points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]))


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's MediaPipe landmarks in the photo's pixel frame.

    points: (478, 2) float32, pixels (x right, y down, pixel centres at +0.5).
    z: (478,) float32, relative depth in pixels (same scale as x; smaller is
        nearer the camera; zero near the face centre). Only relative values mean anything.
    bbox: (4,) float32, (x0, y0, x1, y1) of the points.
    confidence: detector score in [0, 1].
    image_size: (width, height) of the photo.
    source: "facemesh" (found directly) or "detector_crop" (found by the
        full-range detector and meshed in an enlarged crop).
    """

    points: np.ndarray
    z: np.ndarray
    bbox: np.ndarray
    confidence: float
    image_size: tuple[int, int]
    source: str = "facemesh"

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = (float(v) for v in self.bbox)
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def interocular(self) -> float:
        """Distance between the outer eye corners in pixels."""
        return eye_corner_distance(self.points)

    def describe(self) -> str:
        x0, y0, x1, y1 = (float(v) for v in self.bbox)
        return (
            f"{len(self.points)} landmarks ({self.source}), box {x1 - x0:.0f}x{y1 - y0:.0f} px "
            f"at ({x0:.0f}, {y0:.0f}), eye distance {self.interocular:.0f} px, "
            f"confidence {self.confidence:.2f}"
        )


class _Detectors:
    """The MediaPipe graphs, built on first use."""

    def __init__(self) -> None:
        from .mediapipe_solutions import solutions

        mp = solutions()
        face_mesh, face_detection = mp.face_mesh, mp.face_detection
        self.mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=MAX_FACES,
            refine_landmarks=True,
            min_detection_confidence=MIN_DETECTION_CONFIDENCE,
        )
        self.short_range = face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=MIN_DETECTION_CONFIDENCE
        )
        self.full_range = face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=MIN_DETECTION_CONFIDENCE
        )


_lock = threading.Lock()
_detectors: _Detectors | None = None


def _get_detectors() -> _Detectors:
    global _detectors
    if _detectors is None:
        try:
            _detectors = _Detectors()
        except ImportError as exc:
            raise ImportError(
                "face landmarks need MediaPipe 0.10.21: pip install 'likeness[landmarks]'"
            ) from exc
    return _detectors


def detect_faces(image: np.ndarray | Photo) -> list[FaceLandmarks]:
    """All faces in a photo, ordered left to right by box centre.

    image: (H, W, 3) uint8 RGB array or a ``Photo``. Returns an empty list when
    there is no face.
    """
    rgb, _ = _as_rgb(image)
    h, w = rgb.shape[:2]
    with _lock:
        det = _get_detectors()
        faces = [
            _from_normalized(lm.landmark, scale=(w, h), crop=None, size=(w, h), score=np.nan)
            for lm in (det.mesh.process(rgb).multi_face_landmarks or [])
        ]
        boxes, scores = _detections(det, rgb)
        faces = [_with_score(f, boxes, scores) for f in faces]
        for i in np.argsort(-scores, kind="stable"):
            if any(_iou(boxes[i], f.bbox) > _MATCH_IOU for f in faces):
                continue
            found = _mesh_in_crop(det, rgb, boxes[i], float(scores[i]))
            if found is not None and not any(_iou(found.bbox, f.bbox) > _MATCH_IOU for f in faces):
                faces.append(found)
    faces.sort(key=lambda f: float(f.bbox[0] + f.bbox[2]))
    return faces


def detect_landmarks(
    image: np.ndarray | Photo, *, face_index: int | None = None
) -> FaceLandmarks:
    """The 478 landmarks of one face in a photo.

    image: (H, W, 3) uint8 RGB array or a ``Photo``.
    face_index: which face, counting from the left of the photo (0 = leftmost);
        None picks the largest and warns (``MultipleFacesWarning``) when there
        are several.
    Raises ``NoFaceError`` when no face is found or ``face_index`` is out of range.
    """
    _, label = _as_rgb(image)
    faces = detect_faces(image)
    if not faces:
        raise NoFaceError(
            f"no face found in {label}. Use a photo where the face is visible, lit, upright and "
            "at least ~60 pixels across, and not covered by hands, hair or strong shadows."
        )
    if face_index is None:
        chosen = max(range(len(faces)), key=lambda i: faces[i].area)
        if len(faces) > 1:
            warnings.warn(
                f"{label} shows {len(faces)} faces; using the largest (face_index={chosen}, "
                "counting from the left). Pass face_index to choose another.",
                MultipleFacesWarning,
                stacklevel=2,
            )
        return faces[chosen]
    if not -len(faces) <= face_index < len(faces):
        raise NoFaceError(
            f"face_index={face_index} but {label} shows only {len(faces)} face(s); "
            f"use 0..{len(faces) - 1}, counting from the left"
        )
    return faces[face_index]


def _as_rgb(image: np.ndarray | Photo) -> tuple[np.ndarray, str]:
    if isinstance(image, Photo):
        return image.rgb, repr(image.name)
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"expected an (H, W, 3) uint8 RGB array or a Photo, got {type(image).__name__}; "
            "read files with core.priors.load_image"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(
            f"expected an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}; "
            "read files with core.priors.load_image, which converts any photo to that"
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageError(f"the image is {image.shape[1]}x{image.shape[0]} pixels: too small for a face")
    return np.ascontiguousarray(image), "the photo"


def _from_normalized(landmarks, *, scale, crop, size, score) -> FaceLandmarks:
    """MediaPipe normalised landmarks -> FaceLandmarks in photo pixels.

    scale: (w, h) of the image MediaPipe saw; crop: the Crop it was cut with, or None.
    """
    xyz = np.array([(p.x, p.y, p.z) for p in landmarks], np.float64)
    pts = xyz[:, :2] * np.asarray(scale, np.float64)
    # MediaPipe's z uses the scale of x (normalised by the input width).
    z = xyz[:, 2] * float(scale[0])
    if crop is not None:
        pts = crop.to_image(pts)
        z = z / crop.scale
    pts = pts.astype(np.float32)
    bbox = np.concatenate([pts.min(axis=0), pts.max(axis=0)]).astype(np.float32)
    return FaceLandmarks(
        points=pts,
        z=z.astype(np.float32),
        bbox=bbox,
        confidence=float(score),
        image_size=(int(size[0]), int(size[1])),
        source="facemesh" if crop is None else "detector_crop",
    )


def _detections(det: _Detectors, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both detectors' boxes: (N, 4) float64 pixel (x0, y0, x1, y1), (N,) float64 scores."""
    h, w = rgb.shape[:2]
    boxes, scores = [], []
    for detector in (det.short_range, det.full_range):
        for d in detector.process(rgb).detections or []:
            rb = d.location_data.relative_bounding_box
            boxes.append(
                (rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h)
            )
            scores.append(d.score[0] if d.score else 0.0)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)


def _with_score(face: FaceLandmarks, boxes: np.ndarray, scores: np.ndarray) -> FaceLandmarks:
    matched = [float(s) for b, s in zip(boxes, scores) if _iou(b, face.bbox) > _MATCH_IOU]
    # FaceMesh's own detector accepted the face at MIN_DETECTION_CONFIDENCE at least.
    score = max(matched) if matched else MIN_DETECTION_CONFIDENCE
    return FaceLandmarks(face.points, face.z, face.bbox, score, face.image_size, face.source)


def _mesh_in_crop(det: _Detectors, rgb: np.ndarray, box: np.ndarray, score: float):
    """Mesh the face in an enlarged crop around a detector box; None if FaceMesh still fails."""
    center = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
    side = CROP_FACTOR * max(box[2] - box[0], box[3] - box[1])
    if side < 4:
        return None
    crop = crop_square(rgb, center, side, CROP_SIZE)
    found = det.mesh.process(np.ascontiguousarray(crop.rgb)).multi_face_landmarks or []
    h, w = rgb.shape[:2]
    candidates = [
        _from_normalized(lm.landmark, scale=(CROP_SIZE, CROP_SIZE), crop=crop, size=(w, h), score=score)
        for lm in found
    ]
    # The crop can catch a neighbour's face too: keep the one on the detector box.
    candidates = [c for c in candidates if _iou(c.bbox, box) > _MATCH_IOU]
    return max(candidates, key=lambda c: c.area) if candidates else None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (4,) boxes (x0, y0, x1, y1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
