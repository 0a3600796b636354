"""'likeness template preview' draws a real PNG (on a small template, to stay fast)."""

import numpy as np
from PIL import Image

from core.cli import main
from core.template import random_template


def test_preview_png(tmp_path):
    src = tmp_path / "t.npz"
    random_template(seed=2).save(src)
    out = tmp_path / "p.png"
    assert main(["template", "preview", "--template", str(src), "--out", str(out)]) == 0
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert (img < 128).mean() > 0.001  # something was drawn


def test_preview_bad_template_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    assert main(["template", "preview", "--template", str(bad), "--out", str(tmp_path / "p.png")]) == 2
    assert "not a template file" in capsys.readouterr().err
