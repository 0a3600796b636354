"""Deformation transfer (core/geometry/deformation_transfer.py): a shape key carried onto another
mesh of the same topology as per-triangle deformation gradients."""

from __future__ import annotations

import numpy as np
import pytest

from core.geometry.deformation_transfer import deformation_gradients, transfer_deltas


def _sheet(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy square sheet in z = f(x, y), (n*n, 3) vertices and its triangles."""
    x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    verts = np.stack([x.ravel(), y.ravel(), 0.2 * np.sin(2 * x.ravel()) * np.cos(y.ravel())], 1)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, 1:].ravel(), i[1:, :-1].ravel()
    return verts, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _hinge(verts: np.ndarray, angle: float) -> np.ndarray:
    """A key that turns the sheet's x > 0.3 part about the line x = 0.3, z = 0 (a jaw opening), by an
    angle rising smoothly from 0 at x = 0.3 to ``angle`` at x = 1; the rest stays still."""
    r = np.clip(verts[:, 0] - 0.3, 0, None)
    a = angle * np.clip(r / 0.7, 0, 1) ** 2
    moved = verts.copy()
    moved[:, 0] = np.where(r > 0, 0.3 + r * np.cos(a), verts[:, 0])
    moved[:, 2] = np.where(r > 0, -r * np.sin(a), verts[:, 2])
    return moved - verts


def _flipped(rest: np.ndarray, moved: np.ndarray, tris: np.ndarray) -> int:
    n = lambda v: np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])  # noqa: E731
    return int(((n(rest) * n(moved)).sum(1) < 0).sum())


def _stretch(rest: np.ndarray, moved: np.ndarray, tris: np.ndarray) -> float:
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    length = lambda v: np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)  # noqa: E731
    return float(np.abs(length(moved) / length(rest) - 1).max())


def test_the_source_itself_gets_its_own_keys_back():
    verts, tris = _sheet()
    flat = verts * [1, 1, 0]
    keys = np.stack([_hinge(flat, 1.0), _hinge(flat, -0.5), np.zeros_like(flat)])
    np.testing.assert_allclose(transfer_deltas(flat, keys, flat, tris), keys, atol=1e-9)


def test_a_scaled_moved_copy_gets_the_key_scaled():
    """Source and target share a frame (a fitted head sits in the template's): a copy 1.7x the size
    and moved gets the key 1.7x."""
    verts, tris = _sheet()
    key = _hinge(verts * [1, 1, 0], 1.0)
    got = transfer_deltas(verts * [1, 1, 0], key[None], 1.7 * verts * [1, 1, 0] + [0.3, -2.0, 5.0], tris)[0]
    np.testing.assert_allclose(got, 1.7 * key, atol=1e-7)  # the solve's faint pull to the added deltas


def test_still_vertices_stay_and_a_narrower_bumpy_target_moves_like_the_source():
    """On a target shaped otherwise (half as wide, bumpy: a thinner lip), added deltas overshoot:
    edges stretch 3x and faces fold; carried as gradients the key stretches and turns the target's
    triangles as it does the source's."""
    verts, tris = _sheet()
    source = verts * [1, 1, 0]
    key = _hinge(source, 1.0)
    target = source * [0.5, 1, 1]
    target[:, 2] = 0.05 * np.sin(9 * verts[:, 0])
    got = transfer_deltas(source, key[None], target, tris)[0]
    still = np.linalg.norm(key, axis=1) < 1e-6
    assert still.sum() > 50 and np.abs(got[still]).max() == 0.0
    assert _stretch(target, target + got, tris) < 1.05 * _stretch(source, source + key, tris)
    assert _flipped(target, target + got, tris) <= _flipped(source, source + key, tris)
    # what adding the deltas does
    assert _stretch(target, target + key, tris) > 2 * _stretch(source, source + key, tris)
    assert _flipped(target, target + key, tris) > _flipped(source, source + key, tris)


def test_gradients_of_a_rigid_move_are_its_rotation():
    verts, tris = _sheet(5)
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    grads = deformation_gradients(verts, verts @ rot.T + 2.0, tris)
    np.testing.assert_allclose(grads, np.broadcast_to(rot, grads.shape), atol=1e-12)


def test_shapes_must_agree():
    verts, tris = _sheet(4)
    with pytest.raises(ValueError, match="shapes differ"):
        transfer_deltas(verts, np.zeros((1, 3, 3)), verts, tris)
