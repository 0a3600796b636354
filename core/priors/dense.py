"""Dense per-pixel cues behind one interface, and the provider that reads user files.

A cue is a per-pixel map in the photo's pixel frame plus a confidence map:
- ``normals``: (H, W, 3) unit camera-space normals in OpenCV axes (visible
  surfaces have n_z < 0; bridge/conventions.py owns this convention).
- ``uv``: (H, W, 2) template UV coordinates in [0, 1].
- ``points``: (H, W, 3) camera-space points in metres (OpenCV axes).
Confidence is (H, W) float32 in [0, 1]; 0 means "no data here".

Two providers exist: ``FileCues`` (maps the user supplies) and
``core.priors.face_prior.FacePriorCues`` (the face prior network this project trains).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import cv2
import numpy as np

from bridge.conventions import decode_normals

from .errors import ImageError
from .image import Photo
from .landmarks import FaceLandmarks

CUE_CHANNELS = {"normals": 3, "uv": 2, "points": 3}
# Map files whose aspect ratio differs from the photo's by more than this are refused.
_ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class CueMap:
    """values: (H, W, C) float32; confidence: (H, W) float32 in [0, 1]."""

    values: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class DenseCues:
    """Per-pixel cues of one photo, keyed by kind ("normals", "uv", "points")."""

    image_size: tuple[int, int]
    maps: dict[str, CueMap] = field(default_factory=dict)
    source: str = ""

    def __getitem__(self, kind: str) -> CueMap:
        return self.maps[kind]

    def __contains__(self, kind: str) -> bool:
        return kind in self.maps

    def describe(self) -> str:
        w, h = self.image_size
        parts = [
            f"{k} {float((m.confidence > 0).mean()) * 100:.0f}% covered" for k, m in sorted(self.maps.items())
        ]
        return f"dense cues from {self.source or '?'} at {w}x{h}: " + (", ".join(parts) or "none")


class CueProvider(ABC):
    """Something that turns a photo into dense cues."""

    name: str = ""
    # True for a network's estimate, False for maps measured or rendered elsewhere (files).
    predicted: bool = False

    @property
    @abstractmethod
    def kinds(self) -> tuple[str, ...]:
        """The cue kinds this provider returns."""

    @abstractmethod
    def predict(self, photo: Photo, face: FaceLandmarks | None = None) -> DenseCues:
        """Cues for ``photo`` in its pixel frame; ``face`` locates the face when known."""


class FileCues(CueProvider):
    """Cue maps the user supplies as files, one photo's worth.

    normal_map: 8/16-bit PNG or TIFF storing n * 0.5 + 0.5, or .npy/.exr holding
        the raw vectors; (H, W, 3), alpha (if any) is the confidence.
    uv_map: PNG/TIFF with u in red, v in green and a mask in blue (or alpha),
        or .npy (H, W, 2) with NaN for "no data" / (H, W, 3) with a confidence channel.
    point_map: .npy or .exr (H, W, 3) camera-space points in metres; NaN or z <= 0 is "no data".
    depth_map: .npy/.exr (H, W) depth in metres, or a 16-bit PNG in units of
        ``depth_scale`` metres (default millimetres); needs the intrinsics ``K`` (3, 3).
    Maps are resampled to the photo's size when their aspect ratio matches.
    """

    name = "files"

    def __init__(
        self,
        *,
        normal_map: str | os.PathLike | None = None,
        uv_map: str | os.PathLike | None = None,
        point_map: str | os.PathLike | None = None,
        depth_map: str | os.PathLike | None = None,
        K: np.ndarray | None = None,
        depth_scale: float = 0.001,
    ) -> None:
        if point_map is not None and depth_map is not None:
            raise ValueError("give a point map or a depth map, not both")
        if depth_map is not None and K is None:
            raise ValueError(
                "a depth map needs the camera intrinsics K (3x3, pixels) to become points; "
                "pass K=... or supply a point map instead"
            )
        self.paths = {"normals": normal_map, "uv": uv_map, "points": point_map, "depth": depth_map}
        self.K = None if K is None else np.asarray(K, np.float64).reshape(3, 3)
        self.depth_scale = float(depth_scale)

    @property
    def kinds(self) -> tuple[str, ...]:
        kinds = [k for k in ("normals", "uv") if self.paths[k] is not None]
        if self.paths["points"] is not None or self.paths["depth"] is not None:
            kinds.append("points")
        return tuple(kinds)

    def predict(self, photo: Photo, face: FaceLandmarks | None = None) -> DenseCues:
        size = photo.size
        maps: dict[str, CueMap] = {}
        if self.paths["normals"] is not None:
            maps["normals"] = _fit_to(read_normal_map(self.paths["normals"]), size, "normals")
        if self.paths["uv"] is not None:
            maps["uv"] = _fit_to(read_uv_map(self.paths["uv"]), size, "uv")
        if self.paths["points"] is not None:
            maps["points"] = _fit_to(read_point_map(self.paths["points"]), size, "points")
        if self.paths["depth"] is not None:
            depth = _fit_to(read_depth_map(self.paths["depth"], self.depth_scale), size, "depth")
            maps["points"] = depth_to_points(depth, self.K)
        return DenseCues(image_size=size, maps=maps, source=self.name)


def read_map_file(path: str | os.PathLike) -> np.ndarray:
    """A map file -> (H, W, C) float64; integer images are scaled to [0, 1], float data kept."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        # OpenCV reads EXR only when this is set before its first EXR call.
        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    if not os.path.isfile(path):
        raise ImageError(f"map file not found: {path!r}")
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ImageError(f"{path!r} is not a readable .npy array ({exc})") from exc
        if not np.issubdtype(arr.dtype, np.number):
            raise ImageError(f"{path!r} holds {arr.dtype} data; save a float array")
        arr = arr.astype(np.float64)
        return arr[..., None] if arr.ndim == 2 else arr
    if ext not in (".png", ".tif", ".tiff", ".exr"):
        raise ImageError(f"{path!r}: map files must be .png, .tif/.tiff, .exr or .npy")
    try:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(
            f"OpenCV cannot read {path!r} here ({str(exc).splitlines()[-1]}); "
            "convert it to a 16-bit PNG or a .npy array"
        ) from exc
    if img is None:
        raise ImageError(f"{path!r} is corrupt or not an image; re-export it as 16-bit PNG or .npy")
    if img.ndim == 3 and img.shape[2] >= 3:
        # OpenCV orders channels BGR(A).
        img = np.concatenate([img[..., 2::-1], img[..., 3:]], axis=2)
    if img.dtype == np.uint8:
        out = img.astype(np.float64) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float64) / 65535.0
    else:
        out = img.astype(np.float64)
    return out[..., None] if out.ndim == 2 else out


def read_normal_map(path: str | os.PathLike) -> CueMap:
    raw = read_map_file(path)
    if raw.shape[2] not in (3, 4):
        raise ImageError(f"normal map {os.fspath(path)!r} has {raw.shape[2]} channels; it needs RGB or RGBA")
    encoded = os.path.splitext(os.fspath(path))[1].lower() in (".png", ".tif", ".tiff")
    rgb = raw[..., :3]
    n = decode_normals(rgb) if encoded else _unit(np.nan_to_num(rgb))
    conf = (np.linalg.norm(n, axis=2) > 0).astype(np.float64)
    if raw.shape[2] == 4:
        conf *= np.clip(raw[..., 3], 0.0, 1.0)
    return CueMap(n.astype(np.float32), conf.astype(np.float32))


def read_uv_map(path: str | os.PathLike) -> CueMap:
    raw = read_map_file(path)
    if raw.shape[2] not in (2, 3, 4):
        raise ImageError(f"UV map {os.fspath(path)!r} has {raw.shape[2]} channels; it needs (u, v[, mask])")
    uv = raw[..., :2]
    conf = np.isfinite(uv).all(axis=2).astype(np.float64)
    if raw.shape[2] >= 3:
        extra = raw[..., 3] if raw.shape[2] == 4 else raw[..., 2]
        conf *= np.clip(np.nan_to_num(extra), 0.0, 1.0)
    return CueMap(np.nan_to_num(uv).astype(np.float32), conf.astype(np.float32))


def read_point_map(path: str | os.PathLike) -> CueMap:
    raw = read_map_file(path)
    if raw.shape[2] != 3:
        raise ImageError(f"point map {os.fspath(path)!r} must be (H, W, 3) camera-space metres")
    ok = np.isfinite(raw).all(axis=2) & (np.nan_to_num(raw[..., 2]) > 0)
    return CueMap(np.where(ok[..., None], raw, 0.0).astype(np.float32), ok.astype(np.float32))


def read_depth_map(path: str | os.PathLike, depth_scale: float = 0.001) -> CueMap:
    """Depth in metres: float files as stored, integer PNG/TIFF times ``depth_scale``."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".png", ".tif", ".tiff"):
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.isfile(path) else None
        if img is None:
            raise ImageError(f"depth map {path!r} is missing or unreadable; use a 16-bit PNG or .npy")
        if img.ndim != 2:
            raise ImageError(f"depth map {path!r} must have one channel, got {img.shape[2]}")
        scale = depth_scale if np.issubdtype(img.dtype, np.integer) else 1.0
        depth = img.astype(np.float64) * scale
    else:
        raw = read_map_file(path)
        if raw.shape[2] != 1:
            raise ImageError(f"depth map {path!r} must have one channel, got {raw.shape[2]}")
        depth = raw[..., 0]
    ok = np.isfinite(depth) & (depth > 0)
    return CueMap(np.where(ok, depth, 0.0)[..., None].astype(np.float32), ok.astype(np.float32))


def depth_to_points(depth: CueMap, K: np.ndarray) -> CueMap:
    """Depth (H, W, 1) metres + intrinsics K (3, 3) pixels -> camera-space points (H, W, 3)."""
    h, w = depth.values.shape[:2]
    # Pixel centres at +0.5, as in bridge/conventions.py.
    u = np.arange(w, dtype=np.float64) + 0.5
    v = np.arange(h, dtype=np.float64) + 0.5
    z = depth.values[..., 0].astype(np.float64)
    x = (u[None, :] - K[0, 2] - K[0, 1] * (v[:, None] - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    y = (v[:, None] - K[1, 2]) / K[1, 1] * z
    return CueMap(np.stack([x, y, z], axis=2).astype(np.float32), depth.confidence)


def _unit(n: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(norm > 1e-8, n / np.maximum(norm, 1e-8), 0.0)


def _fit_to(cue: CueMap, size: tuple[int, int], kind: str) -> CueMap:
    """Resample a map to the photo's (width, height) when the aspect ratio matches."""
    w, h = size
    mh, mw = cue.values.shape[:2]
    if (mw, mh) == (w, h):
        return cue
    if abs(mw / mh - w / h) > _ASPECT_TOLERANCE * (w / h):
        raise ImageError(
            f"the {kind} map is {mw}x{mh} but the photo is {w}x{h}; "
            "it must cover the whole photo (same aspect ratio)"
        )
    # Nearest keeps UVs and points from blending across occlusion edges; normals are smooth.
    interp = cv2.INTER_LINEAR if kind == "normals" else cv2.INTER_NEAREST
    values = cv2.resize(cue.values, (w, h), interpolation=interp)
    if values.ndim == 2:
        values = values[..., None]
    if kind == "normals":
        values = _unit(values).astype(np.float32)
    conf = cv2.resize(cue.confidence, (w, h), interpolation=cv2.INTER_NEAREST)
    return CueMap(values.astype(np.float32), conf.astype(np.float32))
