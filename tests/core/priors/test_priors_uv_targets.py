"""UV-map nearest-neighbour vertex targets: reference lookup, sub-pixel accuracy, occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from core.priors.uv_targets import uv_map_to_vertex_targets


def _smooth_uv_map(h: int = 96, w: int = 128) -> tuple[np.ndarray, callable]:
    """A smooth, invertible UV map and its inverse (uv -> continuous pixel)."""
    def forward(x, y):
        return np.stack([0.1 + 0.006 * x + 0.0004 * y, 0.2 + 0.007 * y - 0.0005 * x], axis=-1)

    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    uv = forward(xs, ys)
    a = np.array([[0.006, 0.0004], [-0.0005, 0.007]])
    inv = np.linalg.inv(a)

    def inverse(uvs):
        return (uvs - [0.1, 0.2]) @ inv.T

    return uv, inverse


def test_matches_brute_force_nearest_and_is_subpixel_exact():
    uv, inverse = _smooth_uv_map()
    mask = np.ones(uv.shape[:2], bool)
    rng = np.random.default_rng(0)
    truth = rng.uniform([5, 5], [120, 90], size=(300, 2))
    vuv = truth @ np.array([[0.006, 0.0004], [-0.0005, 0.007]]).T + [0.1, 0.2]
    targets, valid = uv_map_to_vertex_targets(uv, mask, vuv, threshold=0.01)
    assert valid.all()
    np.testing.assert_allclose(inverse(vuv), truth, atol=1e-9)
    assert np.abs(targets - truth).max() < 1e-3
    # Slow reference: argmin over all pixels.
    flat = uv.reshape(-1, 2)
    nearest = np.argmin(((vuv[:, None] - flat[None]) ** 2).sum(-1), axis=1)
    ref = np.stack([nearest % uv.shape[1], nearest // uv.shape[1]], axis=1) + 0.5
    assert np.abs(targets - ref).max() <= 1.0


def test_distance_threshold_and_mask():
    uv, _ = _smooth_uv_map()
    mask = np.ones(uv.shape[:2], bool)
    mask[:, 64:] = False
    inside = uv[40, 20] + 1e-5
    masked_out = uv[40, 100]
    far = np.array([5.0, 5.0])
    targets, valid = uv_map_to_vertex_targets(uv, mask, np.stack([inside, masked_out, far]), 0.01)
    assert valid.tolist() == [True, False, False]
    assert np.isnan(targets[1:]).all()
    assert np.abs(targets[0] - [20.5, 40.5]).max() < 0.01


def test_occlusion_by_a_fold_drops_hidden_vertices():
    uv, _ = _smooth_uv_map()
    mask = np.ones(uv.shape[:2], bool)
    # A "nose" covers columns 50..69 with a far-away UV patch: the skin UVs under it are hidden.
    hidden = uv[:, 50:70].copy()
    uv[:, 50:70] = hidden[:, ::-1] * 0.2 + 0.7
    vuv = np.concatenate([hidden[30:60, 2:18].reshape(-1, 2), uv[30:60, 10:40].reshape(-1, 2)])
    n_hidden = 30 * 16
    # A loose δ_uv, as noisy predictions need: the distance test alone cannot reject them all.
    targets, valid = uv_map_to_vertex_targets(uv, mask, vuv, threshold=0.05)
    assert not valid[:n_hidden].any()
    assert valid[n_hidden:].all()
    # Without the occlusion tests, the plain nearest-neighbour rule would accept many hidden ones.
    loose, loose_valid = uv_map_to_vertex_targets(
        uv, mask, vuv, threshold=0.05, max_offset_px=1e9, jump_ratio=1e9
    )
    assert loose_valid[:n_hidden].sum() > 0


def test_visibility_and_empty_inputs():
    uv, _ = _smooth_uv_map()
    mask = np.ones(uv.shape[:2], bool)
    vuv = uv[[10, 20], [10, 20]]
    _, valid = uv_map_to_vertex_targets(uv, mask, vuv, 0.01, visible=np.array([True, False]))
    assert valid.tolist() == [True, False]
    t, v = uv_map_to_vertex_targets(uv, np.zeros_like(mask), vuv, 0.01)
    assert not v.any() and np.isnan(t).all()
    t, v = uv_map_to_vertex_targets(uv, mask, np.zeros((0, 2)), 0.01)
    assert t.shape == (0, 2) and v.shape == (0,)


def test_bad_shapes():
    uv, _ = _smooth_uv_map()
    mask = np.ones(uv.shape[:2], bool)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        uv_map_to_vertex_targets(uv[..., 0], mask, np.zeros((1, 2)), 0.01)
    with pytest.raises(ValueError, match="mask"):
        uv_map_to_vertex_targets(uv, mask[1:], np.zeros((1, 2)), 0.01)
    with pytest.raises(ValueError, match="threshold"):
        uv_map_to_vertex_targets(uv, mask, np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="visible"):
        uv_map_to_vertex_targets(uv, mask, np.zeros((2, 2)), 0.01, visible=np.ones(3, bool))
