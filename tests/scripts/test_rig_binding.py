"""Rig binding and animation checks (scripts/animation_check.py) on the template and three fitted results.

Each photo is fitted once (draft preset, a short schedule) and every GLB is
imported into one fresh Blender (bpy), its head bound to its armature, and
posed: jaw 0/15/25/30°, neck ±30°, eyes ±25°, and eyeBlinkLeft/Right,
mouthSmileLeft, jawOpen, mouthPucker, browInnerUp at 1. Per pose a result
may flip no more faces than the template and stretch its worst edge at most
1.5x the template's; at rest no front ray passes between the lips and no tooth
is seen or sits in their flesh, with the mouth open >= 50 % of the front teeth
are seen, a blink hides its eyeball and bends its lid line at most 10° more
than the template's. A failure names the
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
    assert template["jaw_0"]["teeth_outside_lips"] == 0, template["jaw_0"]
    assert template["eyeBlinkLeft"]["eyeball_seen"] == 0.0 and template["eyeBlinkLeft"]["lid_line_dihedral"] > 90


# Flips per pose, measured on these fits: jaw 15/25/30 deg 32-51 / 49-70 / 56-81 against the template's
# 54 / 74 / 82; jawOpen 7-8 (8); blinks 30-40 (40); smile 0 (0). A few faces of slack keep float
# differences between machines from failing it; before the jaw band and the deformation transfer the
# fits flipped up to 83 more.
FLIP_SLACK = 5


@pytest.mark.parametrize("photo", PHOTOS)
def test_fitted_rigs_fold_like_the_template(photo, checks):
    """Per pose, a fitted result folds (flipped faces against its rest) about as much as the template."""
    check = checks[photo]
    r, t = check["result"], check["template"]
    worse = {p: (r[p]["flipped_faces"], t[p]["flipped_faces"]) for p in t
             if "skipped" not in r[p] and r[p]["flipped_faces"] > t[p]["flipped_faces"] + FLIP_SLACK}
    assert check["poses"] == 16 and not worse, f"{photo}: (result, template) flipped faces {worse}"


# Every pose's checks on each fitted result. They failed on the fitted shapes (2 / 2 / 4 checks a
# photo: teeth hidden on jawOpen, lid corners stretched, blinks folded, light between the lips)
# until the result was made rig-ready (core/template/rig_ready.py, mouth.py): fine edges at the
# lids and lips lengthened back, parted lips sealed, over-stretched keys softened, blinks closed as
# the template's, the teeth placed to show and tucked out of the lips. Measured with 1 and 2
# threads on this machine: worst stretch 1.19-1.38x the template's, front teeth seen 57-68 %,
# blink lid lines 152-163°; 27 of 30 fits with the schedule moved by an iteration or two pass.
@pytest.mark.parametrize("photo", PHOTOS)
def test_fitted_result_animates_like_the_template(photo, checks):
    check = checks[photo]
    assert check["poses"] == 16, check["failures"]
    assert check["failures"] == [], f"{photo}: " + "; ".join(check["failures"])


@pytest.mark.parametrize("photo", PHOTOS)
def test_fitted_result_mouth_seals_at_rest_and_shows_its_teeth_open(photo, checks):
    """The issue's mouth targets on each fitted result: no front ray between the lips and no tooth
    seen or in the lips' flesh at rest, >= 50 % of the front teeth's front-facing vertices seen at
    jaw 25° and at jawOpen = 1."""
    r = checks[photo]["result"]
    figures = {p: {k: r[p].get(k) for k in ("front_teeth_seen", "rays_between_lips", "teeth_outside_lips")}
               for p in ("jaw_0", "jaw_25", "jawOpen")}
    assert r["jaw_0"]["rays_between_lips"] == 0 and r["jaw_0"]["teeth_outside_lips"] == 0, f"{photo}: {figures}"
    assert min(r["jaw_25"]["front_teeth_seen"], r["jawOpen"]["front_teeth_seen"]) >= 0.5, f"{photo}: {figures}"
