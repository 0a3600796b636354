"""tools/eye_picture.py: an eye's close-up at rest shows the eyeball through the lid opening,
and more of it where the skin around the eye is drawn back."""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))

import eye_picture  # noqa: E402


def test_an_eye_close_up_shows_more_eyeball_where_the_skin_is_drawn_back(tmp_path):
    from core.template import load_default

    t = load_default()
    verts, parts = np.asarray(t.verts, np.float32), np.asarray(t.part_verts, np.float32)
    ring = np.asarray(t.regions["eye_r_ring"])
    corner = verts[ring[np.argmin(verts[ring, 0])]]
    reach = np.linalg.norm((verts - corner)[:, [0, 2]], axis=1)
    hollow = verts.copy()
    hollow[:, 1] += 5e-3 * np.clip(1.5 - reach / 12e-3, 0.0, 1.0)
    files = []
    for name, v in (("rest", verts), ("hollow", hollow)):
        np.savez(tmp_path / f"{name}.npz", verts_neutral=v, parts_neutral=parts)
        files.append(str(tmp_path / f"{name}.npz"))
    assert eye_picture.main([str(tmp_path / "eyes.png"), *files, "--side", "r"]) == 0
    img = np.asarray(Image.open(tmp_path / "eyes.png")).astype(int)
    x0, y0, x1, y1 = eye_picture.CROP
    assert img.shape == (y1 - y0, 2 * (x1 - x0), 3)
    # Eyeball pixels are grey (equal channels), skin pixels red-brown.
    eyeball = (np.abs(img[..., 0] - img[..., 2]) < 12) & (img[..., 0] > 90)
    rest, drawn_back = eyeball[:, : x1 - x0].sum(), eyeball[:, x1 - x0:].sum()
    assert rest > 5000 and drawn_back > 1.2 * rest
