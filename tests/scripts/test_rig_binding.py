"""Rig binding and animation checks (scripts/animation_check.py) on the template and three fitted results.

Each photo is fitted once (draft preset, a short schedule) and every GLB is
imported into one fresh Blender (bpy), its head bound to its armature, and
posed: jaw 0/15/25/30°, neck ±30°, eyes ±25°, and eyeBlinkLeft/Right,
mouthSmileLeft, jawOpen, mouthPucker, browInnerUp at 1. Per pose a result
may flip no more faces than the template and stretch its worst edge at most
1.5x the template's; at rest no front ray passes between the lips, with the
mouth open >= 50 % of the front teeth are seen, a blink hides its eyeball and
bends its lid line at most 10° more than the template's. A failure names the
photo, the pose and the figures.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image
from conftest import REPO

PHOTOS = ("astronaut", "grace_hopper", "camera")
TINY = json.dumps({"stages": {"rig": {"iterations": 30}, "joint": {"iterations": 10}, "vertex": {"iterations": 15}}})


def _photo(name: str, folder: pathlib.Path) -> pathlib.Path:
    if name == "grace_hopper":
        return pathlib.Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    import skimage.data

    rgb = getattr(skimage.data, name)()
    path = folder / f"{name}.png"
    Image.fromarray(np.dstack([rgb] * 3) if rgb.ndim == 2 else rgb).save(path)
    return path


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """{photo: animation_check summary} for the three fitted results, measured in one Blender run
    against the template (measured once)."""
    from core.cli import main
    from core.fit.outputs import write_template_glb
    from core.template import load_default

    folder = tmp_path_factory.mktemp("rig_binding")
    template_glb = folder / "template.glb"
    write_template_glb(template_glb, load_default())
    glbs = []
    for photo in PHOTOS:
        out = folder / photo
        rc = main(["fit", str(_photo(photo, folder)), "--out", str(out), "--preset", "draft", "--schedule", TINY,
                   "--device", "cpu", "--quiet"])
        assert rc == 0, photo
        glbs.append(str(out / "result.glb"))
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "animation_check.py"), *glbs, str(template_glb),
                          "--json", str(folder / "anim.json")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(zip(PHOTOS, json.loads((folder / "anim.json").read_text())))


def test_template_binds_and_poses(checks):
    """The yardstick itself: every pose's bones and keys are found and measured on the template,
    and the poses do move it (a check that measured nothing would pass too)."""
    template = checks[PHOTOS[0]]["template"]
    assert len(template) == 16 and not [p for p, v in template.items() if "skipped" in v], template
    moved = {p: v["max_edge_stretch"] for p, v in template.items()}
    assert moved["jaw_0"] < 1e-3 and moved["jaw_30"] > moved["jaw_15"] > 0.1
    assert all(moved[p] > 0.05 for p in ("eyes_left", "eyeBlinkLeft", "mouthPucker", "browInnerUp")), moved
    # The mouth and blink checks ran on the bound meshes: a blink hides its eyeball on the template.
    assert {"front_teeth_seen", "rays_between_lips"} <= set(template["jaw_25"]), template["jaw_25"]
    assert template["eyeBlinkLeft"]["eyeball_seen"] == 0.0 and template["eyeBlinkLeft"]["lid_line_dihedral"] > 90


# Known failure, measured and tracked (the rig issue stays open until it passes; strict: a fix flips it).
# The jaw's smoothed weight band and the expressions carried by deformation transfer brought the
# failed checks from 8 / 11 / 7 to 1 / 3 / 4: astronaut jawOpen shows 49 % of the front teeth;
# Grace Hopper's jawOpen flips 12 faces (template 8), a blink 41 (40) and jawOpen shows 46 %; the
# camera fit (a 24-pixel eye distance) creases its lids at rest (148-154 deg against 109) so a blink
# bends them to 171-179 deg, eyes down stretch 0.41 (0.39 allowed) and 0.1 mm² between its lips.
@pytest.mark.xfail(strict=True, reason="jawOpen teeth 46-49 %, a few extra jawOpen/blink flips, creased lids on "
                                       "the low-resolution camera fit")
@pytest.mark.parametrize("photo", PHOTOS)
def test_fitted_result_animates_like_the_template(photo, checks):
    check = checks[photo]
    assert check["poses"] == 16, check["failures"]
    assert check["failures"] == [], f"{photo}: " + "; ".join(check["failures"])


# Known failure, measured and tracked (strict: a fix flips it). The template meets these targets
# (tests/core/template/test_face_checks.py). On the three fits, with the teeth seated behind the
# lips, jaw 25 deg shows 52-59 % of the front teeth, jawOpen 49 / 46 / 59 %, and the camera fit
# leaves 8 rays (0.1 mm²) between its lips at rest.
@pytest.mark.xfail(strict=True, reason="jawOpen shows 46-49 % of the front teeth on two fits; 0.1 mm² between the "
                                       "camera fit's lips")
@pytest.mark.parametrize("photo", PHOTOS)
def test_fitted_result_mouth_seals_at_rest_and_shows_its_teeth_open(photo, checks):
    """The issue's mouth targets on each fitted result: no front ray between the lips at rest,
    >= 50 % of the front teeth's front-facing vertices seen at jaw 25° and at jawOpen = 1."""
    r = checks[photo]["result"]
    figures = {p: {k: r[p].get(k) for k in ("front_teeth_seen", "rays_between_lips")} for p in ("jaw_0", "jaw_25",
                                                                                                "jawOpen")}
    assert r["jaw_0"]["rays_between_lips"] == 0, f"{photo}: {figures}"
    assert min(r["jaw_25"]["front_teeth_seen"], r["jawOpen"]["front_teeth_seen"]) >= 0.5, f"{photo}: {figures}"
