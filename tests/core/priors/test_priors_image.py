"""Photo reading: formats, bit depths, colour modes, EXIF orientation, bad files."""

from __future__ import annotations

import io
import os
import pathlib

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from core.priors import MAX_PIXELS, ImageError, Photo, crop_square, load_image


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt, kw, tol",
    [
        ("PNG", {}, 0),
        ("TIFF", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("JPEG", {"quality": 95}, 6.0),
    ],
)
def test_rgb_formats_round_trip(tmp_path, astronaut, fmt, kw, tol):
    path = tmp_path / f"astronaut.{fmt.lower()}"
    path.write_bytes(_encode(Image.fromarray(astronaut), fmt, **kw))
    photo = load_image(path)
    assert isinstance(photo, Photo)
    assert photo.rgb.shape == astronaut.shape and photo.rgb.dtype == np.uint8
    assert photo.rgb.flags.c_contiguous
    assert photo.name == "astronaut" and photo.source_format == fmt
    assert np.abs(photo.rgb.astype(float) - astronaut).mean() <= tol
    assert "512x512" in photo.describe()


def test_bytes_input_and_name(astronaut):
    data = _encode(Image.fromarray(astronaut), "PNG")
    photo = load_image(data, name="upload")
    assert photo.name == "upload"
    np.testing.assert_array_equal(photo.rgb, astronaut)
    np.testing.assert_array_equal(load_image(memoryview(data)).rgb, astronaut)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path, astronaut):
    gray8 = np.asarray(Image.fromarray(astronaut).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(path)
    photo = load_image(path)
    assert photo.source_mode.startswith("I")
    np.testing.assert_array_equal(photo.rgb[..., 0], gray8)
    np.testing.assert_array_equal(photo.rgb[..., 0], photo.rgb[..., 2])


def test_16bit_rgb_png_and_tiff(tmp_path, astronaut):
    rgb16 = astronaut.astype(np.uint16) * 256 + 200
    for ext in ("png", "tif"):
        path = tmp_path / f"rgb16.{ext}"
        assert cv2.imwrite(str(path), rgb16[..., ::-1])
        photo = load_image(path)
        assert photo.rgb.shape == astronaut.shape
        assert np.abs(photo.rgb.astype(int) - astronaut).max() <= 1


def test_float_tiff(tmp_path, astronaut):
    gray = np.asarray(Image.fromarray(astronaut).convert("L")).astype(np.float32) / 255.0
    path = tmp_path / "float.tif"
    Image.fromarray(gray, mode="F").save(path)
    photo = load_image(path)
    assert np.abs(photo.rgb[..., 1].astype(float) - gray * 255).max() <= 0.5


def test_grayscale_jpeg(tmp_path, astronaut):
    path = tmp_path / "gray.jpg"
    Image.fromarray(astronaut).convert("L").save(path, quality=95)
    photo = load_image(path)
    assert photo.source_mode == "L" and photo.rgb.shape == (512, 512, 3)
    assert (photo.rgb[..., 0] == photo.rgb[..., 1]).all()


def test_rgba_composited_over_white(tmp_path, astronaut):
    alpha = np.full(astronaut.shape[:2], 255, np.uint8)
    alpha[:, :100] = 0
    alpha[:, 100:200] = 128
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([astronaut, alpha])).save(path)
    photo = load_image(path)
    assert (photo.rgb[:, :100] == 255).all()
    np.testing.assert_array_equal(photo.rgb[:, 200:], astronaut[:, 200:])
    half = (astronaut[:, 100:200].astype(float) * 128 + 255 * 127) / 255
    assert np.abs(photo.rgb[:, 100:200] - half).max() <= 1.0


def test_palette_with_transparency(tmp_path, astronaut):
    pal = Image.fromarray(astronaut).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    path = tmp_path / "pal.png"
    pal.save(path, transparency=int(np.asarray(pal)[0, 0]))
    photo = load_image(path)
    assert (photo.rgb[0, 0] == 255).all()
    assert photo.rgb.shape == astronaut.shape


def test_cmyk_jpeg(tmp_path, astronaut):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(astronaut).convert("CMYK").save(path, quality=95)
    photo = load_image(path)
    assert photo.source_mode == "CMYK"
    assert np.abs(photo.rgb.astype(float) - astronaut).mean() < 8.0


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(tmp_path, astronaut, orientation):
    # The stored pixels are what a camera held that way writes; the tag says how to undo it.
    stored = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    im = Image.fromarray(astronaut[:, :400]).transpose(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"exif{orientation}.jpg"
    im.save(path, quality=95, exif=exif)
    photo = load_image(path)
    assert photo.orientation == orientation
    assert photo.rgb.shape == (512, 400, 3)
    assert np.abs(photo.rgb.astype(float) - astronaut[:, :400]).mean() < 6.0
    assert f"orientation {orientation}" in photo.describe()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, orientation):
    from PIL import ImageOps

    stored = Image.fromarray(np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(load_image(tmp_path / "o.png").rgb, expected)


def _peak_rss_kb_of(fn) -> int:
    """Peak resident memory growth (kB) of this process while ``fn`` runs (VmHWM, reset first)."""
    def status(key):
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    base = status("VmRSS")
    pathlib.Path("/proc/self/clear_refs").write_text("5")
    result = fn()
    return status("VmHWM") - base, result


def test_largest_accepted_rgba_png_costs_its_decoded_budget_and_no_more(tmp_path):
    from core.priors.image import MAX_DECODED_BYTES, decoded_bytes

    path = tmp_path / "big.png"
    side = int((MAX_DECODED_BYTES / decoded_bytes((1, 1), "RGBA")) ** 0.5)
    Image.new("RGBA", (side, side), (200, 100, 50, 128)).save(path, compress_level=1)
    budget = decoded_bytes((side, side), "RGBA")
    assert budget <= MAX_DECODED_BYTES
    grown, photo = _peak_rss_kb_of(lambda: load_image(path))
    assert photo.rgb.shape == (side, side, 3) and tuple(photo.rgb[0, 0]) == (227, 177, 152)
    assert grown * 1024 < budget + (32 << 20), f"{grown >> 10} MB peak for a {budget >> 20} MiB budget"


def test_truncated_jpeg(tmp_path, astronaut):
    data = _encode(Image.fromarray(astronaut), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def test_corrupt_header(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageError):
        load_image(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageError, match="not an image.*JPEG, PNG, TIFF or WebP"):
        load_image(path)


def test_missing_folder_empty_and_wrong_type(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="path or the file's bytes"):
        load_image(np.zeros((4, 4, 3), np.uint8))


def test_decompression_bomb_refused_with_advice(tmp_path):
    # 10000 x 7000 one-bit pixels compress to a few kB but are 70 MP.
    path = tmp_path / "huge.png"
    Image.new("1", (10000, 7000)).save(path)
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageError, match=r"10000x7000.*Downscale"):
        load_image(path)
    assert 10000 * 7000 > MAX_PIXELS
    with pytest.raises(ImageError, match="Downscale"):
        load_image(_encode(Image.new("RGB", (300, 300)), "PNG"), max_pixels=50_000)


def test_crop_square_round_trip_and_pixels(astronaut):
    center = np.array([230.0, 140.0])
    up = crop_square(astronaut, center, side=128, size=256)
    assert up.rgb.shape == (256, 256, 3)
    # Points map into the crop and back exactly.
    pts = np.array([[0.0, 0.0], [256.0, 256.0], [17.25, 99.5]])
    np.testing.assert_allclose(up.from_image(up.to_image(pts)), pts, atol=1e-4)
    np.testing.assert_allclose(up.to_image([[0.0, 0.0]])[0], center - 64, atol=1e-5)
    # An unscaled crop at an integer offset copies pixels exactly.
    same = crop_square(astronaut, (200.0, 150.0), side=64, size=64)
    np.testing.assert_array_equal(same.rgb, astronaut[118:182, 168:232])
    # Shrinking by 2 averages 2x2 blocks.
    down = crop_square(astronaut, (256.0, 256.0), side=512, size=256)
    blocks = astronaut.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    assert np.abs(down.rgb.astype(float) - blocks).max() <= 1.0
    # Outside the photo is filled.
    edge = crop_square(astronaut, (0.0, 0.0), side=64, size=64, fill=7)
    assert (edge.rgb[:32, :32] == 7).all()


def _jpeg_with_focal(tmp_path, size, focal_35mm, orientation=None):
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm  # FocalLengthIn35mmFilm
    if orientation is not None:
        exif[0x0112] = orientation
    path = tmp_path / f"focal_{focal_35mm}_{orientation}.jpg"
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path, exif=exif)
    return path


def test_exif_35mm_focal_length_in_pixels(tmp_path):
    from core.priors.image import focal_35mm_to_pixels

    photo = load_image(_jpeg_with_focal(tmp_path, (300, 200), 50))
    assert photo.focal_35mm == 50.0
    # The 35 mm frame's diagonal (43.27 mm) maps onto the image's (360.6 px).
    assert photo.focal_pixels == pytest.approx(50 * np.hypot(300, 200) / np.hypot(36, 24))
    assert focal_35mm_to_pixels(np.hypot(36, 24), 3000, 4000) == pytest.approx(5000.0)
    # A rotated photo keeps its focal length in pixels (the diagonal does not change).
    turned = load_image(_jpeg_with_focal(tmp_path, (300, 200), 50, orientation=6))
    assert turned.size == (200, 300) and turned.focal_pixels == pytest.approx(photo.focal_pixels)
    # Absent, zero ("unknown" in EXIF) or absurd values are no focal length.
    for value in (None, 0, 5000):
        assert load_image(_jpeg_with_focal(tmp_path, (64, 48), value)).focal_35mm is None
    with pytest.raises(ValueError, match="positive"):
        focal_35mm_to_pixels(0.0, 10, 10)


def test_exif_focal_of_a_cropped_photo_is_not_used(tmp_path):
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0xA405], ifd[0xA002], ifd[0xA003] = 26, 4032, 3024  # a phone's 4:3 capture
    im = Image.fromarray(np.full((300, 300, 3), 128, np.uint8))  # cropped square
    im.save(tmp_path / "crop.jpg", exif=exif)
    with pytest.warns(UserWarning, match="cropped"):
        assert load_image(tmp_path / "crop.jpg").focal_35mm is None
    # The same capture only resized keeps its focal length.
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(tmp_path / "small.jpg", exif=exif)
    assert load_image(tmp_path / "small.jpg").focal_35mm == 26.0


def test_decompression_bomb_under_the_pixel_limit_is_refused_before_decoding(tmp_path):
    import tracemalloc

    from core.priors.image import MAX_DECODED_BYTES, decoded_bytes

    # an all-zero RGBA PNG under 64 MP compresses to well under a megabyte
    path = tmp_path / "bomb.png"
    Image.new("RGBA", (7900, 7900)).save(path, optimize=False, compress_level=9)
    assert path.stat().st_size < 1 << 20 and decoded_bytes((7900, 7900), "RGBA") > MAX_DECODED_BYTES
    tracemalloc.start()
    with pytest.raises(ImageError, match=r"needs \d+ MiB decoded, above the limit"):
        load_image(path)
    assert tracemalloc.get_traced_memory()[1] < 16 << 20
    tracemalloc.stop()


def test_devices_and_fifos_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        with pytest.raises(ImageError, match="not a regular file"):
            load_image(path)


def test_a_45_megapixel_camera_jpeg_is_decoded_at_half_scale(tmp_path):
    from core.priors.image import MAX_DECODED_BYTES, decoded_bytes

    w, h = 8256, 5504  # a full-frame camera's 45 MP file: too large to decode whole within the budget
    assert decoded_bytes((w, h), "RGB") > MAX_DECODED_BYTES
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 85
    ramp = np.linspace(0, 255, w, dtype=np.float32).astype(np.uint8)
    Image.fromarray(np.broadcast_to(ramp[None, :, None], (h, w, 3)).copy()).save(tmp_path / "dslr.jpg", exif=exif,
                                                                              quality=80)
    photo = load_image(tmp_path / "dslr.jpg")
    assert photo.size == (w // 2, h // 2)
    assert photo.rgb[:, -1].mean() > 240 and photo.rgb[:, 0].mean() < 15  # the same picture, smaller
    # the 35 mm-equivalent focal length holds at any scale: 85 mm over the half-size diagonal
    assert photo.focal_35mm == 85.0
    assert photo.focal_pixels == pytest.approx(85 * np.hypot(w // 2, h // 2) / np.hypot(36, 24))
