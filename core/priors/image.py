"""Read any common photo into an 8-bit RGB array in its upright orientation.

Pillow decodes JPEG, PNG, TIFF and WebP (8 or 16 bits per channel, grayscale,
palette, RGBA, CMYK, YCbCr); the EXIF orientation tag is applied so the array
is what a person sees. Everything downstream works on ``Photo.rgb``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.files import UnsafeFileError, open_regular

from .errors import ImageError

# 64 megapixels is far more than any face fit needs, and keeps a hostile file
# from expanding into gigabytes before we can refuse it. It is below Pillow's
# own bomb threshold, so our readable error fires first.
MAX_PIXELS = 64_000_000
# Memory the decoded file plus its RGB copy may take (pixels x channels x bytes),
# checked on the header's size and mode before decoding: a small PNG that
# inflates to gigabytes is refused unread. A 24 MP RGB photo needs 168 MB; the
# largest RGBA accepted (28 MP) stays well inside the core's 300 MB per-attack budget.
MAX_DECODED_BYTES = 192 * 1024 * 1024
# Bytes per channel of Pillow modes wider than 8 bits.
_WIDE_MODES = {"I": 4, "F": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}

_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_EXIF_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm (SHORT, mm; 0 = unknown)
_EXIF_PIXEL_X, _EXIF_PIXEL_Y = 0xA002, 0xA003  # PixelXDimension / PixelYDimension at capture
# Aspect ratios further apart than this mean the photo was cropped after capture.
CROP_ASPECT_TOL = 0.01
# The ``focal`` fit option's words (else a 35 mm-equivalent focal length in mm).
FOCAL_AUTO = "auto"
FOCAL_ESTIMATE = "estimate"
# The 35 mm film frame's diagonal: a 35 mm-equivalent focal length scales by the
# image diagonal (a crop factor is a ratio of diagonals).
FILM_35MM_DIAGONAL_MM = float(np.hypot(36.0, 24.0))
_SUPPORTED = "JPEG, PNG, TIFF or WebP"


@dataclass(frozen=True)
class Photo:
    """An upright 8-bit RGB photo.

    rgb: (H, W, 3) uint8, C-contiguous, EXIF orientation already applied.
    name: file stem, or the name given for in-memory bytes.
    orientation: the EXIF orientation tag that was applied (1 = none).
    focal_35mm: the EXIF 35 mm-equivalent focal length in mm, or None when the
        file does not say (``focal_pixels`` converts it).
    source_mode: Pillow mode of the file ("RGB", "I;16", "CMYK", ...).
    source_format: Pillow format name ("JPEG", "PNG", ...).
    """

    rgb: np.ndarray
    name: str
    orientation: int = 1
    source_mode: str = "RGB"
    source_format: str = ""
    focal_35mm: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @property
    def focal_pixels(self) -> float | None:
        """The EXIF focal length in pixels of this image, or None."""
        return None if self.focal_35mm is None else focal_35mm_to_pixels(self.focal_35mm, *self.size)

    def describe(self) -> str:
        w, h = self.size
        rot = "" if self.orientation == 1 else f", EXIF orientation {self.orientation} applied"
        return f"{self.name}: {w}x{h} {self.source_format or '?'} {self.source_mode}{rot}"


def load_image(
    source: str | os.PathLike | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Photo:
    """Read a photo file (path or encoded bytes) into an upright RGB ``Photo``.

    Alpha is composited over white; 16-bit and float data are scaled to 8 bits.
    Raises ``ImageError`` with an actionable message for missing, corrupt,
    truncated, unsupported or oversized files.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("the image data is empty (0 bytes); pass the contents of a photo file")
        label = name or "<bytes>"
        opener = io.BytesIO(data)
        default_name = name or "image"
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = path
        try:
            opener = open_regular(path, "photo")  # a FIFO or device is refused before it is read
        except UnsafeFileError as exc:
            raise ImageError(str(exc)) from None
        default_name = name or os.path.splitext(os.path.basename(path))[0]
    else:
        raise ImageError(
            f"load_image takes a file path or the file's bytes, not {type(source).__name__}"
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with opener, Image.open(opener) as im:
                _check_pixels(im, label, max_pixels)
                fmt = im.format or ""
                mode = im.mode
                exif = im.getexif()
                orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
                focal_35mm, cropped = _exif_focal_35mm(exif, im.size)
                im.load()
                rgb = _to_rgb8(im, label)
        rgb = _upright(rgb, orientation)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(_too_big_message(label, None, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{label!r} is not an image Likeness can read; save it as {_SUPPORTED}"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"{label!r} is corrupt or truncated ({exc}); re-export or re-download the photo"
        ) from exc
    if cropped:
        warnings.warn(f"{label}: cropped after it was taken (EXIF says {cropped}); its EXIF focal length "
                      "no longer fits the picture and is not used (the fit estimates it; pass the lens's "
                      "35 mm-equivalent focal length to override)", stacklevel=2)
    return Photo(
        rgb=np.ascontiguousarray(rgb),
        name=default_name,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        source_mode=mode,
        source_format=fmt,
        focal_35mm=focal_35mm,
    )


def focal_35mm_to_pixels(focal_35mm: float, width: int, height: int) -> float:
    """A 35 mm-equivalent focal length (mm) in pixels of a ``width`` x ``height``
    image: the film frame's diagonal maps onto the image's. Holds for a resized
    photo, not for a cropped one (a crop keeps the pixel focal length but
    shortens the diagonal)."""
    if not (np.isfinite(focal_35mm) and focal_35mm > 0):
        raise ValueError(f"a 35 mm-equivalent focal length must be positive, got {focal_35mm}")
    return float(focal_35mm) * float(np.hypot(width, height)) / FILM_35MM_DIAGONAL_MM


def focal_option(value) -> str | float:
    """Validate the ``focal`` fit option: "auto" (default; the photo's EXIF
    35 mm-equivalent focal length when it has one, else estimated), "estimate"
    (always estimated; for cropped photos, whose EXIF no longer matches), or a
    35 mm-equivalent focal length in mm for every photo."""
    if value is None or value == FOCAL_AUTO:
        return FOCAL_AUTO
    if value == FOCAL_ESTIMATE:
        return FOCAL_ESTIMATE
    try:
        mm = float(value)
    except (TypeError, ValueError):
        mm = float("nan")
    if not (np.isfinite(mm) and 4.0 <= mm <= 2000.0):
        raise ValueError(f"focal must be {FOCAL_AUTO!r}, {FOCAL_ESTIMATE!r} or a 35 mm-equivalent focal length "
                         f"in mm between 4 and 2000 (50 for a standard lens, 26 for a phone's main camera); "
                         f"got {value!r}")
    return mm


def photo_focal(photo: Photo, option) -> tuple[float | None, str]:
    """(focal length in pixels or None, where it came from: "given", "exif" or "estimated")."""
    option = focal_option(option)
    if isinstance(option, float):
        return focal_35mm_to_pixels(option, *photo.size), "given"
    if option == FOCAL_AUTO and photo.focal_35mm is not None:
        return photo.focal_pixels, "exif"
    return None, "estimated"


def _exif_focal_35mm(exif, size: tuple[int, int]) -> tuple[float | None, str]:
    """(FocalLengthIn35mmFilm or None, why it was dropped). None when absent, zero or
    absurd, or when the capture size in EXIF has another aspect ratio than the
    pixels (a crop: the 35 mm equivalent no longer maps onto this picture)."""
    try:
        ifd = exif.get_ifd(_EXIF_IFD)
        value = ifd.get(_EXIF_FOCAL_35MM)
        focal = float(value) if value is not None else None
        captured = (int(ifd.get(_EXIF_PIXEL_X, 0) or 0), int(ifd.get(_EXIF_PIXEL_Y, 0) or 0))
    except (TypeError, ValueError, KeyError, OSError, SyntaxError):
        return None, ""
    # 0 means unknown; beyond 8-2000 mm the tag is not a camera's.
    if focal is None or not 8.0 <= focal <= 2000.0:
        return None, ""
    if min(captured) > 0:
        a = max(captured) / min(captured)
        b = max(size) / max(min(size), 1)
        if abs(a / b - 1.0) > CROP_ASPECT_TOL:
            return None, f"{captured[0]}x{captured[1]} at capture, {size[0]}x{size[1]} now"
    return focal, ""


def decoded_bytes(size: tuple[int, int], mode: str) -> int:
    """Bytes a (width, height) image of Pillow ``mode`` takes decoded plus its 8-bit RGB copy.

    Pillow keeps 8-bit images of two to four bands in four bytes a pixel; the
    copy is made a strip at a time (``_to_rgb8``), so these two are the peak.
    """
    pixel = _WIDE_MODES.get(mode) or (1 if Image.getmodebands(mode) == 1 else 4)
    return size[0] * size[1] * (pixel + 3)


def _check_pixels(im: Image.Image, label: str, max_pixels: int) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{label!r} has no pixels ({w}x{h}); re-export the photo")
    if w * h > max_pixels:
        raise ImageError(_too_big_message(label, (w, h), max_pixels))
    need = decoded_bytes((w, h), im.mode)
    if need > MAX_DECODED_BYTES:
        raise ImageError(f"{label!r} ({w}x{h} {im.mode}) needs {need / 2**20:.0f} MiB decoded, above the limit of "
                         f"{MAX_DECODED_BYTES / 2**20:.0f} MiB; save it smaller or as 8-bit RGB")


def _too_big_message(label: str, size: tuple[int, int] | None, max_pixels: int) -> str:
    dims = f" is {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} MP)" if size else " is too large"
    side = int(np.sqrt(max_pixels * 3 / 4))
    return (
        f"{label!r}{dims}, above the limit of {max_pixels / 1e6:.0f} MP. Downscale it first, "
        f"e.g. to {side * 4 // 3}x{side} or smaller "
        f"(`magick in.jpg -resize {side * 4 // 3}x{side} out.jpg`), or raise max_pixels."
    )


# The RGB copy is made this many pixels at a time, so converting a photo costs
# its decoded size plus its RGB size and no whole-image temporaries.
_STRIP_PIXELS = 1 << 20
# EXIF orientation -> the array view that shows the photo upright (as ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _upright(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """``rgb`` turned as its EXIF orientation says (one copy, only when it is turned)."""
    turn = _ORIENT.get(orientation)
    return rgb if turn is None else np.ascontiguousarray(turn(rgb))


def _to_rgb8(im: Image.Image, label: str) -> np.ndarray:
    """Decoded Pillow image (any mode) -> (H, W, 3) uint8 RGB, converted a strip of rows at a time."""
    w, h = im.size
    rows = max(1, _STRIP_PIXELS // w)
    out = np.empty((h, w, 3), np.uint8)
    for y in range(0, h, rows):
        out[y:y + rows] = _strip_to_rgb8(im.crop((0, y, w, min(h, y + rows))), label)
    return out


def _strip_to_rgb8(im: Image.Image, label: str) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale (Pillow keeps one channel for these); scale, do not clip.
        gray = np.asarray(im).astype(np.float64)
        gray8 = np.clip(np.rint(gray * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray8[..., None], 3, axis=2)
    if mode == "F":
        # Float images are taken as linear-range [0, 1] data, as TIFF writers store them.
        gray = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        gray8 = np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray8[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = np.asarray(im if mode == "RGBA" else im.convert("RGBA"))
        alpha = rgba[..., 3].astype(np.uint16)
        # White behind transparent pixels: cut-out portraits usually sit on white.
        # Integer maths a channel at a time: no float copy of the whole image.
        rgb = np.empty(rgba.shape[:2] + (3,), np.uint8)
        white = 255 * (255 - alpha) + 127
        for c in range(3):
            rgb[..., c] = (rgba[..., c] * alpha + white) // 255
        return rgb
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"{label!r} uses the pixel format {mode!r}, which cannot be turned into RGB; "
            f"save it as an 8-bit RGB {_SUPPORTED}"
        ) from exc
