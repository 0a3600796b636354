"""What photos tell us about a face: landmarks, and dense per-pixel cues.

Public API
----------
Photos
    ``load_image(path_or_bytes, *, name=None, max_pixels=MAX_PIXELS) -> Photo``
    ``Photo(rgb (H, W, 3) uint8, name, orientation, source_mode, source_format)``
Landmarks (MediaPipe FaceMesh, 478 points, pixel frame with centres at +0.5)
    ``detect_landmarks(image, *, face_index=None) -> FaceLandmarks``
    ``detect_faces(image) -> list[FaceLandmarks]`` (left to right)
    ``FaceLandmarks(points (478, 2) float32, z (478,) float32, bbox (4,) float32,
    confidence, image_size, source)``
UV correspondences (Pixel3DMM nearest-UV lookup with occlusion tests)
    ``uv_map_to_vertex_targets(uv_map (H, W, 2), mask (H, W), vertex_uvs (N, 2), threshold,
    *, visible=None) -> (targets (N, 2) float32 pixels, valid (N,) bool)``
Dense cues (per-pixel maps + confidence in the photo's frame)
    ``CueProvider.predict(photo, face=None) -> DenseCues`` with maps "normals"
    (H, W, 3), "uv" (H, W, 2), "points" (H, W, 3), each a ``CueMap(values, confidence)``.
    ``FileCues(normal_map=, uv_map=, point_map=, depth_map=, K=, depth_scale=)`` (user files)
    ``core.priors.face_prior.FacePriorCues(weights=None, device=)`` (our network; imports torch)
    ``core.priors.face_prior.load_checkpoint(path) / save_checkpoint(path, net)``
Crops
    ``crop_square(rgb, center, side, size) -> Crop`` with ``to_image`` / ``from_image``
Errors
    ``PriorError`` > ``ImageError`` (> ``CueError``), ``NoFaceError``, ``CheckpointError``;
    ``MultipleFacesWarning``.
"""

from .crop import Crop, crop_square
from .dense import CueMap, CueProvider, DenseCues, FileCues
from .errors import CheckpointError, CueError, ImageError, MultipleFacesWarning, NoFaceError, PriorError
from .image import MAX_PIXELS, Photo, load_image
from .landmarks import NUM_LANDMARKS, FaceLandmarks, detect_faces, detect_landmarks
from .uv_targets import uv_map_to_vertex_targets

__all__ = [
    "MAX_PIXELS",
    "NUM_LANDMARKS",
    "CheckpointError",
    "Crop",
    "CueError",
    "CueMap",
    "CueProvider",
    "DenseCues",
    "FileCues",
    "FaceLandmarks",
    "ImageError",
    "MultipleFacesWarning",
    "NoFaceError",
    "Photo",
    "PriorError",
    "crop_square",
    "detect_faces",
    "detect_landmarks",
    "load_image",
    "describe",
    "uv_map_to_vertex_targets",
]


def describe(photo: Photo, face: FaceLandmarks | None = None, cues: DenseCues | None = None) -> str:
    """One log line per thing we know about a photo."""
    lines = [photo.describe()]
    if face is not None:
        lines.append("  " + face.describe())
    if cues is not None:
        lines.append("  " + cues.describe())
    return "\n".join(lines)
