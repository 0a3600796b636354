"""The face prior's offline tools: training data (tools/prior_data.py) and training
(tools/train_prior.py), on a handful of crops."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))

import prior_data  # noqa: E402
import train_prior  # noqa: E402


def test_training_people_are_never_bench_people():
    from core.bench.photo import HELD_OUT_SEEDS, TUNE_SEEDS

    train = set(prior_data.training_seeds(100_000))
    val = set(prior_data.validation_seeds(1000))
    bench = set(TUNE_SEEDS) | set(HELD_OUT_SEEDS)
    # bench fit and bench multiview draw their identities from small seeds (--seed 1 + cases).
    assert min(train | val) > 10_000
    assert not (train & bench) and not (val & bench) and not (train & val)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior_data")
    assert prior_data.main([str(out / "train"), "--people", "2", "--per-person", "3", "--size", "64",
                            "--batch", "3", "--shard", "4"]) == 0
    assert prior_data.main([str(out / "val"), "--people", "1", "--per-person", "2", "--size", "64",
                            "--validation"]) == 0
    return out


def test_rendered_crops_carry_exact_targets(rendered):
    data = train_prior.load_shards(rendered / "train")
    assert data["image"].shape == (6, 64, 64, 3) and data["image"].dtype == np.uint8
    assert len(sorted((rendered / "train").glob("shard_*.npz"))) == 2  # 4 + 2 crops
    label = data["label"]
    skin = (label == 1) | (label == 2)
    assert (label == 2).sum() > 0.15 * label.size, "the face fills a good part of each crop"
    assert (label == 0).sum() > 0.05 * label.size, "background shows around the head"
    n = data["normals"].astype(np.float32) / 127
    length = np.linalg.norm(n[skin], axis=-1)
    assert np.all(np.abs(length - 1) < 0.03)
    # Skin the camera sees faces it: OpenCV camera-space normals point to -z.
    assert np.mean(n[skin][:, 2] < 0) > 0.97
    uv = data["uv"][skin].astype(np.float32) / 65535
    assert uv.min() >= 0 and uv.max() <= 1 and uv.std(0).min() > 0.02
    # Every crop differs (views, lights, looks are drawn per sample).
    flat = data["image"].reshape(6, -1).astype(np.float32)
    assert np.min(np.abs(flat[:, None] - flat[None]).mean(-1) + np.eye(6) * 1e9) > 2.0
    recipe = json.loads((rendered / "val" / "recipe.json").read_text())
    assert recipe["validation"] and recipe["seeds"][0] == prior_data.VALIDATION_SEED_BASE


def _train(rendered, out: pathlib.Path, *extra: str) -> dict:
    args = [str(rendered / "train"), "--val", str(rendered / "val"), "--out", str(out), "--steps", "4",
            "--batch", "2", "--val-every", "2", "--save-every", "2", "--threads", "1", *extra]
    assert train_prior.main(args) == 0
    return json.loads((out.parent / (out.stem + "_run") / "curves.json").read_text())


def test_training_is_reproducible_and_resumes(rendered, tmp_path):
    a = _train(rendered, tmp_path / "a.pt")
    b = _train(rendered, tmp_path / "b.pt")
    assert a["val"] == b["val"], "same seed and data give the same validation figures"
    # A run stopped after 2 steps and resumed ends where an unbroken run ends.
    run = tmp_path / "c_run"
    args = [str(rendered / "train"), "--val", str(rendered / "val"), "--out", str(tmp_path / "c.pt"), "--steps", "4",
            "--batch", "2", "--val-every", "2", "--save-every", "2", "--threads", "1", "--stop-after", "2"]
    assert train_prior.main(args) == 0
    assert not (tmp_path / "c.pt").exists(), "a stopped run writes no final weights"
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 2
    c = _train(rendered, tmp_path / "c.pt", "--resume", str(run / "last.pt"))
    assert c["val"][-1] == a["val"][-1]
    from core.priors.face_prior import load_checkpoint

    net, extra = load_checkpoint(tmp_path / "a.pt")
    assert extra["steps"] == 4 and set(extra["validation"]) >= {"normal_deg_median", "uv_px_median", "mask_iou"}
    assert net.config.size == 64


def test_a_run_can_start_from_trained_weights(rendered, tmp_path):
    """--init: a second run starts from a first run's weights (its validation before any step is the
    first run's last), trains them further, and its weights keep the first run's record."""
    first = _train(rendered, tmp_path / "first.pt")
    second = _train(rendered, tmp_path / "second.pt", "--init", str(tmp_path / "first.pt"), "--seed", "1")
    start = {k: v for k, v in second["val"][0].items() if k != "step"}
    end = {k: v for k, v in first["val"][-1].items() if k != "step"}
    assert second["val"][0]["step"] == 0
    # fp16 weights: the figures agree to rounding
    assert all(abs(start[k] - end[k]) <= 0.02 * max(abs(end[k]), 1.0) for k in end), (start, end)
    from core.priors.face_prior import load_checkpoint

    _, extra = load_checkpoint(tmp_path / "second.pt")
    assert extra["steps"] == 4 and extra["init"]["steps"] == 4 and extra["init"]["seed"] == 0


def test_the_upper_forehead_box_sits_between_the_face_top_and_the_brows():
    import eval_prior

    points = np.zeros((478, 2))
    points[eval_prior.FOREHEAD_TOP] = (50.0, 10.0)
    for i in eval_prior.BROW_TOPS:
        points[i] = (0.0, 30.0)
    points[eval_prior.BROW_ENDS[0]], points[eval_prior.BROW_ENDS[1]] = (80.0, 32.0), (20.0, 32.0)
    box = eval_prior.upper_forehead(points, 100, 60)
    rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
    # Pixel centres strictly inside y in (10, 20) and x in (20, 80).
    assert (rows.min(), rows.max()) == (10, 19)
    assert (cols.min(), cols.max()) == (20, 79)
    assert box.sum() == 10 * 60


def test_a_sharp_hairline_is_painted_per_pixel():
    # A cap paint rising across one row of pixels: a narrow ramp switches from skin to hair
    # within a few pixels wherever it starts, and leaves the pixels below its start as they were.
    cap = torch.linspace(0, 1, 101).view(1, 101, 1).expand(2, 101, 3)
    skin = torch.full((2, 101, 3, 3), 0.6)
    hair = torch.tensor([[0.05, 0.04, 0.03], [0.3, 0.2, 0.1]])
    out = prior_data.paint_hairline(skin, cap, hair, torch.tensor([0.3, 0.0]), torch.tensor([0.03, 1.0]),
                                    torch.zeros(2, 101, 3))
    sharp, soft = out[0, :, 0, 0], out[1, :, 0, 0]
    assert torch.equal(sharp[:30], skin[0, :30, 0, 0])
    changing = torch.nonzero((sharp[1:] - sharp[:-1]).abs() > 1e-6).flatten()
    assert changing.min() >= 29 and changing.max() <= 33, "the sharp line spans 3 % of the paint"
    # No noise: full hair is 0.83 of the way to the hair colour.
    assert torch.allclose(sharp[40:], torch.full((61,), 0.6 * 0.17 + 0.05 * 0.83))
    assert torch.all(soft[1:] < soft[:-1]), "the soft ramp darkens all the way up the cap"
    noisy = prior_data.paint_hairline(skin, cap, hair, torch.tensor([0.3, 0.0]), torch.tensor([0.03, 1.0]),
                                      torch.randn(2, 101, 3))
    assert torch.equal(noisy[0, :30], skin[0, :30]) and not torch.equal(noisy[0, 40:], out[0, 40:])


def test_a_cap_painted_per_pixel_is_left_out_of_the_vertex_colours():
    from core.template import load_default

    template = load_default()
    scene = prior_data.Scene(template)
    verts = np.concatenate([template.verts, template.part_verts[scene.part_keep]]).astype(np.float32)
    seed = next(s for s in range(50) if prior_data._albedo(scene, verts, np.random.default_rng(s))[2] is not None)
    blended, cap, hair = prior_data._albedo(scene, verts, np.random.default_rng(seed))
    apart, cap2, hair2 = prior_data._albedo(scene, verts, np.random.default_rng(seed), hair_edge=True)
    assert np.array_equal(cap, cap2) and np.array_equal(hair, hair2) and cap.max() == 1.0
    bare = cap == 0
    assert np.array_equal(blended[bare], apart[bare])
    on_cap = cap == 1.0
    assert np.allclose(blended[on_cap], hair, atol=1e-6) and not np.allclose(apart[on_cap], hair, atol=0.02)


def test_glasses_tubes_face_outward_and_sit_in_front_of_the_eyes():
    from core.geometry.mesh_layout import vertex_normals
    from core.template import load_default

    path = np.stack([np.linspace(0, 1, 5), np.zeros(5), np.zeros(5)], 1)
    v, f = prior_data.tube(path, 0.1, False, np.array([0.0, 0.0, 1.0]))
    n = vertex_normals(v, f)
    radial = v - v * np.array([1.0, 0.0, 0.0])
    assert np.all((n * radial).sum(1) > 0), "the tube's triangles are wound outward"
    template = load_default()
    rings = (template.regions["eye_l_ring"], template.regions["eye_r_ring"])
    head = template.verts.astype(np.float64)
    shapes = set()
    for seed in range(5):
        gv, gf = prior_data.glasses(head, rings, np.random.default_rng(seed))
        shapes.add((gv.shape, gf.shape))
        eyes_front = min(head[r][:, 1].min() for r in rings)  # -Y is forward
        rims = gv[:2 * prior_data.RIM_POINTS * prior_data.TUBE_SIDES]
        assert np.median(rims[:, 1]) < eyes_front, "the rims are in front of the eyes"
    assert len(shapes) == 1, "every pair has the same triangles, so a batch renders them together"


def test_glasses_occlude_like_the_eyes_no_skin_and_no_targets():
    from core.template import load_default

    template = load_default()
    scene = prior_data.Scene(template)
    person = (template.verts.astype(np.float32), template.part_verts.astype(np.float32))
    seen, skin = {}, {}
    for share in (1e-9, 1.0):  # the same draws (views, looks); the first hides every pair inside the head
        out = prior_data.render_batch(scene, [person] * 2, np.random.default_rng(3), prior_data.Backgrounds(), 96,
                                      glasses_share=share)
        seen[share] = (out["label"] == 3).mean()
        skin[share] = np.isin(out["label"], (1, 2)).mean()
    # Frames are labelled like the eyes and teeth (3: no normal or UV loss, not head skin).
    assert seen[1.0] > 2 * seen[1e-9], "frames cover more of the face than the eyes alone"
    assert skin[1.0] < skin[1e-9]


def test_the_real_photo_picture_shows_crop_normals_and_confidence():
    import eval_prior

    from core.priors.face_prior import FacePriorCues

    provider = FacePriorCues()
    pic = eval_prior.real_picture(provider)
    s = provider.net.config.size
    assert pic.shape == (3 * s, 3 * s, 3) and pic.dtype == np.uint8
    for row in range(3):
        normals = pic[row * s:(row + 1) * s, s:2 * s]
        confidence = pic[row * s:(row + 1) * s, 2 * s:]
        skin = normals.any(-1)
        assert 0.2 < skin.mean() < 0.95, "the face is skin, the background is not"
        assert not confidence[~skin].any(), "no confidence outside the predicted skin"


def test_a_widened_prior_computes_the_same_maps_and_its_new_channels_learn(tmp_path):
    """tools/widen_prior.py: the trained channels keep their weights, the added ones change nothing
    until trained, and one training step reaches them (their outgoing weights start at zero)."""
    import widen_prior
    from core.priors.face_prior import FacePriorConfig, FacePriorNet, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    net = FacePriorNet(FacePriorConfig(size=64, widths=(8, 8, 12, 16)))
    with torch.no_grad():  # trained-looking batch norms, so the copy of their statistics is tested
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    small = tmp_path / "small.pt"
    save_checkpoint(small, net.eval())
    wide = tmp_path / "wide.pt"
    assert widen_prior.main([str(small), str(wide), "--widths", "8,12,20,32"]) == 0
    a, _ = load_checkpoint(small)
    b, _ = load_checkpoint(wide)
    assert b.config.widths == (8, 12, 20, 32)
    assert sum(p.numel() for p in b.parameters()) > 2 * sum(p.numel() for p in a.parameters())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before, after = a(x), b(x)
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)
    # The deepest level's added channels reach the first up block's trained outputs through zero weights.
    up = b.up[0][0].weight
    held = up.detach()
    assert float(held[:12, 16:32].abs().max()) == 0.0 and float(held[:12, :16].abs().max()) > 0
    b.train()
    out = b(x)
    sum(v.float().mean() for v in out.values()).backward()
    assert float(up.grad[:12, 16:32].abs().max()) > 0, "the new channels get no gradient"
    with pytest.raises(SystemExit, match="each at least"):
        widen_prior.main([str(small), str(tmp_path / "narrow.pt"), "--widths", "8,8,8,8"])
