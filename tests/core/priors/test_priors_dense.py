"""Dense cue providers: user map files and the Pixel3DMM-style network."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from bridge.conventions import encode_normals
from core.priors import CheckpointError, ImageError, Photo
from core.priors.dense import FileCues
from core.priors.pixel3dmm import NetworkCues, Pixel3DMMConfig, Pixel3DMMNet, load_checkpoint, save_checkpoint


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


def _tiny_config(task: str, **kw) -> Pixel3DMMConfig:
    base = dict(
        task=task, backbone="custom", embed_dim=32, depth=2, num_heads=2, patch_size=8,
        img_size=64, pos_grid=6, num_register_tokens=2, head_channels=(16, 8, 8),
    )
    base.update(kw)
    return Pixel3DMMConfig(**base)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    net = Pixel3DMMNet(_tiny_config("uv")).eval()
    path = tmp_path / f"uv{suffix}"
    save_checkpoint(net, path)
    loaded = load_checkpoint(path)
    assert loaded.config == net.config
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = loaded(x)
        torch.testing.assert_close(y, net(x))
    # 8x8 token grid -> 128x128 map; position embeddings resampled from the stored 6x6 grid.
    assert y.shape == (2, 2, 128, 128) and (y >= 0).all() and (y <= 1).all()


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="never downloads"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": {}}, tmp_path / "nocfg.pt")
    with pytest.raises(CheckpointError, match="'config' and 'state_dict'"):
        load_checkpoint(tmp_path / "nocfg.pt")
    net = Pixel3DMMNet(_tiny_config("normals"))
    save_checkpoint(net, tmp_path / "n.pt")
    blob = torch.load(tmp_path / "n.pt", weights_only=True)
    blob["config"]["embed_dim"] = 64
    torch.save(blob, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(tmp_path / "wrong.pt")
    blob["config"]["backbone"] = "vit_huge"
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="unknown backbone"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="is for 'normals'"):
        NetworkCues(uv=tmp_path / "n.pt")


def test_backbone_size_read_from_config():
    cfg = Pixel3DMMConfig.from_dict({"task": "normals", "backbone": "vits14"})
    net = Pixel3DMMNet(cfg)
    assert net.backbone.patch_embed.proj.out_channels == 384 and len(net.backbone.blocks) == 12


def test_network_cues_on_a_real_photo():
    torch.manual_seed(0)
    photo = Photo(rgb=skimage.data.astronaut(), name="astronaut")
    provider = NetworkCues(normals=Pixel3DMMNet(_tiny_config("normals")), uv=Pixel3DMMNet(_tiny_config("uv")))
    cues = provider.predict(photo)
    assert set(provider.kinds) == {"normals", "uv"}
    n, uv = cues["normals"], cues["uv"]
    assert n.values.shape == (512, 512, 3) and uv.values.shape == (512, 512, 2)
    covered = n.confidence > 0
    # The crop is 1.6x the landmark box around the face (box ~92x106 px at (179, 71)).
    assert 0.05 < covered.mean() < 0.2
    assert covered[120, 225] and not covered[500, 20]
    np.testing.assert_allclose(np.linalg.norm(n.values[covered], axis=1), 1.0, atol=1e-4)
    assert (n.values[~covered] == 0).all()
    assert ((uv.values[uv.confidence > 0] >= 0) & (uv.values[uv.confidence > 0] <= 1)).all()
