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
