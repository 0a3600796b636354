"""``spd_solve``: the symmetric ordering gives the same answer as a plain sparse solve."""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from core.geometry.sparse_solve import spd_factor, spd_solve


def test_spd_solve_matches_a_plain_solve_for_one_and_several_right_hand_sides():
    rng = np.random.default_rng(3)
    n = 600
    m = sp.random(n, n, 0.01, random_state=4)
    a = (m @ m.T + sp.eye(n)).tocsr()
    b = rng.normal(size=(n, 3))
    want = spla.spsolve(a.tocsc(), b)
    np.testing.assert_allclose(spd_solve(a, b), want, atol=1e-9)
    solve = spd_factor(a)
    np.testing.assert_allclose(solve(b[:, 1]), want[:, 1], atol=1e-9)
    assert solve(b[:, 1]).shape == (n,)
