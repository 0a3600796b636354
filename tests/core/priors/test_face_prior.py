"""The face prior network and its cue provider (core/priors/face_prior.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import GRACE_HOPPER, REPO
from core.priors.errors import CheckpointError
from core.priors.face_prior import (
    DEFAULT_WEIGHTS, FacePriorConfig, FacePriorCues, FacePriorNet, face_box, load_checkpoint, save_checkpoint,
)


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prior") / "small.pt"
    save_checkpoint(path, FacePriorNet(FacePriorConfig(size=64, widths=(8, 8, 8, 8))).eval())
    return path


@pytest.fixture(scope="module")
def grace():
    from core.priors.image import load_image
    from core.priors.landmarks import detect_landmarks

    photo = load_image(GRACE_HOPPER)
    return photo, detect_landmarks(photo)


def test_checkpoint_round_trip_in_half_precision(small_weights):
    net, extra = load_checkpoint(small_weights)
    assert net.config == FacePriorConfig(size=64, widths=(8, 8, 8, 8)) and extra == {}
    stored = torch.load(small_weights, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    out = net(torch.rand(2, 3, 64, 64))
    assert out["normals"].shape == (2, 3, 64, 64)
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(2, 64, 64), atol=1e-4)
    assert out["uv"].min() >= 0 and out["uv"].max() <= 1


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"not a checkpoint", "is not a face prior checkpoint"),
])
def test_bad_weights_are_named(tmp_path, content, message):
    path = tmp_path / "weights.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_other_torch_files_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="made by tools/train_prior.py"):
        load_checkpoint(path)


def test_cues_land_where_the_crop_came_from(small_weights, grace, monkeypatch):
    """The crop's maps go back to the photo pixels they were cut from: a map that holds each
    crop pixel's own coordinates reads, at a photo pixel, that pixel's crop coordinates."""
    photo, face = grace
    provider = FacePriorCues(small_weights)
    size = provider.net.config.size
    centre, side = face_box(face.points)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    def fake(crop_rgb):
        return {"normals": np.dstack([np.zeros_like(xs), np.zeros_like(xs), -np.ones_like(xs)]),
                "uv": np.dstack([xs / size, ys / size]), "mask": np.ones_like(xs), "confidence": np.ones_like(xs)}

    monkeypatch.setattr(provider, "predict_crop", fake)
    cues = provider.predict(photo, face)
    w, h = photo.size
    assert cues.image_size == (w, h) and cues["uv"].values.shape == (h, w, 2)
    conf = cues["uv"].confidence
    rows, cols = np.nonzero(conf > 0)
    assert len(rows) > 0.5 * side ** 2
    px = np.stack([cols + 0.5, rows + 0.5], -1)
    expected = (px - (centre - side / 2)) * (size / side) / size
    got = cues["uv"].values[rows, cols]
    assert np.abs(got - expected).max() < 1e-3
    # Nothing outside the crop's square.
    outside = (np.abs(px - centre).max(-1) > side / 2 + 1)
    assert not outside.any()
    assert np.allclose(cues["normals"].values[rows, cols], [0, 0, -1], atol=1e-5)


def test_real_network_cues_on_a_photo(small_weights, grace):
    photo, face = grace
    cues = FacePriorCues(small_weights, min_mask=0.0).predict(photo, face)
    n, conf = cues["normals"].values, cues["normals"].confidence
    assert n.dtype == np.float32 and conf.dtype == np.float32
    assert 0 <= conf.min() and conf.max() <= 1 and (conf > 0).any()
    assert np.allclose(np.linalg.norm(n[conf > 0], axis=-1), 1, atol=1e-3)
    assert "face prior" in cues.describe()


def _fit(*args):
    return subprocess.run([sys.executable, "-m", "core.cli", "fit", str(GRACE_HOPPER), *args],
                          capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("args, message", [
    (["--cues", "face_prior", "--prior-weights", "{bad}"], "--prior-weights: bad.pt is not a face prior checkpoint"),
    (["--prior-weights", "{bad}"], "--prior-weights: bad.pt is not a face prior checkpoint"),
    (["--cues", "none", "--prior-weights", "{bad}"], "--prior-weights: it names face prior weights, and --cues none"),
    (["--cues", "face_prior", "--normals", "{bad}"], "--normals: give normal maps or --cues face_prior, not both"),
])
def test_cli_names_bad_prior_options(tmp_path, args, message):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    proc = _fit(*[a.replace("{bad}", str(bad)) for a in args], "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_fit_reads_the_prior_cues(small_weights, tmp_path):
    """``likeness fit --cues face_prior`` runs the network on the photo and the normal term uses it;
    ``--cues none`` fits without it."""
    out = tmp_path / "out"
    proc = _fit("--cues", "face_prior", "--prior-weights", str(small_weights), "--preset", "draft",
                "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["views"][0]["cues"].startswith("dense cues from face prior small.pt")
    assert all(stage["losses"]["normal"] > 0 for stage in report["stages"])
    assert "face prior small.pt" in proc.stderr
    # Without the prior the normal term has nothing to compare.
    plain = _fit("--cues", "none", "--preset", "draft", "--out", str(tmp_path / "plain"), "--quiet")
    assert plain.returncode == 0, plain.stderr
    report = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert report["views"][0]["cues"] == ""
    assert all(stage["losses"]["normal"] == 0 for stage in report["stages"])
def test_shipped_weights_are_small_and_load():
    assert DEFAULT_WEIGHTS.is_file(), "core/data/face_prior.pt ships with the package"
    assert DEFAULT_WEIGHTS.stat().st_size <= 20e6
    net, extra = load_checkpoint(DEFAULT_WEIGHTS)
    assert extra["steps"] > 0 and extra["validation"]["normal_deg_median"] < 20




def test_the_mirrored_pass_makes_the_maps_mirror_alike(small_weights):
    """With the mirrored crop's maps averaged in, a mirrored face gets mirrored normals (x flips
    sign), mask and confidence: the network's left-right bias cancels. One pass alone does not."""
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mirror = np.ascontiguousarray(crop[:, ::-1])
    both, one = FacePriorCues(small_weights), FacePriorCues(small_weights, flip_average=False)
    a, b = both.predict_crop(crop), both.predict_crop(mirror)
    np.testing.assert_allclose(b["normals"][:, ::-1] * [-1, 1, 1], a["normals"], atol=1e-5)
    for key in ("mask", "confidence"):
        np.testing.assert_allclose(b[key][:, ::-1], a[key], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a["normals"], axis=-1), 1.0, atol=1e-5)
    c, d = one.predict_crop(crop), one.predict_crop(mirror)
    assert np.abs(d["normals"][:, ::-1] * [-1, 1, 1] - c["normals"]).max() > 1e-3
