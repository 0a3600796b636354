"""tools/mouth_picture.py: the mouth's close-up of a head posed in Blender shows no teeth at rest
and the front teeth with the jaw open."""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))

import mouth_picture  # noqa: E402


def _teeth_pixels(img: np.ndarray) -> np.ndarray:
    """Ivory pixels (the teeth's colour, shaded): red and green close, blue below them."""
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return (np.abs(r - g) < 15) & (g - b > 10) & (r > 120)


def test_the_mouth_shows_teeth_open_and_none_at_rest(tmp_path):
    from core.fit.outputs import write_template_glb
    from core.template import load_default

    glb = tmp_path / "template.glb"
    write_template_glb(glb, load_default())
    shares = {}
    for pose in ("jaw_0", "jawOpen"):
        out = tmp_path / f"{pose}.png"
        assert mouth_picture.main([str(out), str(glb), str(glb), "--pose", pose]) == 0
        img = np.asarray(Image.open(out).convert("RGB"))
        x0, y0, x1, y1 = mouth_picture.CROP
        assert img.shape == (y1 - y0, 2 * (x1 - x0), 3)  # one tile a head, side by side
        left, right = img[:, : x1 - x0], img[:, x1 - x0:]
        assert np.array_equal(left, right)
        shares[pose] = _teeth_pixels(left).mean()
    assert shares["jaw_0"] < 0.002 and shares["jawOpen"] > 0.03, shares
