"""Dense cue providers: the user map files provider (the network provider: test_face_prior.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bridge.conventions import encode_normals
from core.priors import ImageError, Photo
from core.priors.dense import FileCues


def _sphere_normals(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    x, y = (xs - w / 2) / (0.6 * w), (ys - h / 2) / (0.6 * h)
    z = -np.sqrt(np.clip(1 - x**2 - y**2, 0.05, 1))
    n = np.stack([x, y, z], axis=2)
    return n / np.linalg.norm(n, axis=2, keepdims=True)


def _photo(w: int = 64, h: int = 48) -> Photo:
    return Photo(rgb=np.zeros((h, w, 3), np.uint8), name="p")


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def test_normal_map_png16_and_npy(tmp_path):
    n = _sphere_normals(48, 64)
    enc = np.round(encode_normals(n, dtype=np.float64) * 65535).astype(np.uint16)
    _write_rgb(tmp_path / "n.png", enc)
    cues = FileCues(normal_map=tmp_path / "n.png").predict(_photo())
    m = cues["normals"]
    assert m.values.shape == (48, 64, 3) and m.confidence.shape == (48, 64)
    assert np.abs(m.values - n).max() < 1e-3
    assert (m.values[..., 2] < 0).all() and (m.confidence == 1).all()
    # Raw vectors in .npy at half size are resampled to the photo and renormalised.
    np.save(tmp_path / "n.npy", _sphere_normals(24, 32).astype(np.float32))
    half = FileCues(normal_map=tmp_path / "n.npy").predict(_photo())["normals"]
    assert half.values.shape == (48, 64, 3)
    np.testing.assert_allclose(np.linalg.norm(half.values, axis=2), 1.0, atol=1e-5)
    assert np.abs(half.values - n).mean() < 0.05
    assert "normals 100% covered" in cues.describe()


def test_normal_map_exr_or_clear_error(tmp_path):
    import subprocess
    import sys

    n = _sphere_normals(48, 64).astype(np.float32)
    np.save(tmp_path / "n.npy", n)
    path = tmp_path / "n.exr"
    code = (
        "import os; os.environ['OPENCV_IO_ENABLE_OPENEXR'] = '1'; import cv2, numpy as np, sys; "
        "n = np.load(sys.argv[1]); sys.exit(0 if cv2.imwrite(sys.argv[2], n[..., ::-1].copy()) else 1)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "n.npy"), str(path)], check=True)
    try:
        m = FileCues(normal_map=path).predict(_photo())["normals"]
    except ImageError as exc:
        assert "16-bit PNG" in str(exc)
    else:
        assert np.abs(m.values - n).max() < 1e-5


def test_uv_map_png_with_mask_and_alpha_confidence(tmp_path):
    ys, xs = np.mgrid[0:48, 0:64]
    uv = np.stack([xs / 64, ys / 48], axis=2)
    mask = (xs > 10).astype(np.float64)
    img = np.round(np.dstack([uv, mask]) * 65535).astype(np.uint16)
    _write_rgb(tmp_path / "uv.png", img)
    m = FileCues(uv_map=tmp_path / "uv.png").predict(_photo())["uv"]
    assert m.values.shape == (48, 64, 2)
    assert np.abs(m.values - uv).max() < 1e-4
    np.testing.assert_array_equal(m.confidence, mask)
    with pytest.raises(ImageError, match="same aspect ratio"):
        FileCues(uv_map=tmp_path / "uv.png").predict(_photo(64, 64))


def test_depth_png_unprojects_through_pixel_centres(tmp_path):
    depth_mm = np.full((48, 64), 750, np.uint16)
    depth_mm[:5] = 0
    assert cv2.imwrite(str(tmp_path / "d.png"), depth_mm)
    K = np.array([[80.0, 0, 32.0], [0, 80.0, 24.0], [0, 0, 1]])
    m = FileCues(depth_map=tmp_path / "d.png", K=K).predict(_photo())["points"]
    assert (m.confidence[:5] == 0).all() and (m.confidence[5:] == 1).all()
    p = m.values[5:].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(p[:, 2], 0.75, atol=1e-6)
    proj = (p @ K.T)[:, :2] / p[:, 2:3]
    ys, xs = np.mgrid[5:48, 0:64] + 0.5
    np.testing.assert_allclose(proj, np.stack([xs.ravel(), ys.ravel()], axis=1), atol=1e-4)
    with pytest.raises(ValueError, match="intrinsics K"):
        FileCues(depth_map=tmp_path / "d.png")


def test_point_map_npy_and_bad_files(tmp_path):
    pts = np.random.default_rng(0).normal(size=(48, 64, 3)).astype(np.float32)
    pts[..., 2] = np.abs(pts[..., 2]) + 0.5
    pts[0, 0] = np.nan
    np.save(tmp_path / "p.npy", pts)
    m = FileCues(point_map=tmp_path / "p.npy").predict(_photo())["points"]
    assert m.confidence[0, 0] == 0 and m.confidence.sum() == 48 * 64 - 1
    with pytest.raises(ImageError, match="not found"):
        FileCues(normal_map=tmp_path / "none.png").predict(_photo())
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="corrupt"):
        FileCues(normal_map=tmp_path / "junk.png").predict(_photo())
    (tmp_path / "uv.bmp").write_bytes(b"x")
    with pytest.raises(ImageError, match=r"\.npy"):
        FileCues(uv_map=tmp_path / "uv.bmp").predict(_photo())
