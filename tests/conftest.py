"""Shared fixtures.

bpy can be imported once per process and keeps global state, so everything
that touches it goes through the ``bpy_module`` fixture, which points Blender's
user resources at a throw-away folder first (tests never write to the real
user profile).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# The bundled test photo (Grace Hopper's portrait ships with matplotlib).
GRACE_HOPPER = pathlib.Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
_BLENDER_HOME = pathlib.Path(tempfile.mkdtemp(prefix="likeness-blender-home-"))


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def bpy_module():
    """The ``bpy`` module with user resources in a temporary folder."""
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(_BLENDER_HOME))
    # The user extension repository must exist before bpy starts, or the
    # `bl_ext.user_default` package is never set up for installed extensions.
    (pathlib.Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default").mkdir(
        parents=True, exist_ok=True
    )
    import bpy

    return bpy


def blender_scripts_dir() -> pathlib.Path:
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    root = pathlib.Path(spec.origin).parent
    versions = sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1].isdigit())
    return versions[-1] / "scripts"


def blender_ext_tool() -> list[str]:
    """Command prefix for Blender's own extension tool (runs without Blender)."""
    tool = blender_scripts_dir() / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    return [sys.executable, str(tool)]


def probe_in_blender(path, out_json) -> dict:
    """What an artist gets when opening or importing ``path`` in a fresh Blender (tests/blender_probe.py)."""
    import json
    import subprocess

    res = subprocess.run([sys.executable, str(REPO / "tests" / "blender_probe.py"), str(path), str(out_json)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(pathlib.Path(out_json).read_text())


def obj_vertices_z_up(path) -> "np.ndarray":
    """(N, 3) float64 vertices of a Likeness OBJ (written Y-up as (x, z, -y)) back in the Z-up frame."""
    import numpy as np

    lines = [ln[2:] for ln in pathlib.Path(path).read_text().splitlines() if ln.startswith("v ")]
    yup = np.array([ln.split() for ln in lines], dtype=np.float64)
    return np.stack([yup[:, 0], -yup[:, 2], yup[:, 1]], axis=1)


def point_set_distance(a, b) -> float:
    """Largest distance from a point of either set to the other set (files may split vertices at UV seams)."""
    import numpy as np
    from scipy.spatial import cKDTree

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max()))
