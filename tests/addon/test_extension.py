"""The extension: Blender's validator accepts the manifest, its build tool makes a
zip with only the add-on's files, and that zip installs, enables and disables
cleanly in the bpy module."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO, blender_ext_tool

ALLOWED_TOP = {"__init__.py", "blender_manifest.toml", "LICENSE", "addon", "bridge"}


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("ext")
    subprocess.run(
        blender_ext_tool() + ["build", "--source-dir", str(REPO), "--output-dir", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    (zip_path,) = out.glob("likeness-*.zip")
    return zip_path


def test_manifest_validates():
    res = subprocess.run(blender_ext_tool() + ["validate", str(REPO)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success" in res.stdout


def test_zip_holds_only_addon_files(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= ALLOWED_TOP, tops - ALLOWED_TOP
    assert {"__init__.py", "blender_manifest.toml", "addon/__init__.py", "bridge/__init__.py"} <= set(names)
    assert not any(n.endswith((".pyc", ".so", ".pt")) for n in names)
    text = "\n".join(
        zipfile.ZipFile(extension_zip).read(n).decode("utf-8", "replace") for n in names if n.endswith(".py")
    )
    assert "import torch" not in text


@pytest.mark.bpy
def test_zip_installs_enables_and_disables(bpy_module, extension_zip):
    bpy = bpy_module
    result = bpy.ops.extensions.package_install_files(
        filepath=str(extension_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    module = "bl_ext.user_default.likeness"
    assert module in sys.modules
    assert module in bpy.context.preferences.addons
    assert hasattr(bpy.types, "VIEW3D_PT_likeness_main")
    prefs = bpy.context.preferences.addons[module].preferences
    assert prefs.core_mode == "LOCAL"

    assert bpy.ops.preferences.addon_disable(module=module) == {"FINISHED"}
    assert module not in bpy.context.preferences.addons
    assert not hasattr(bpy.types, "VIEW3D_PT_likeness_main")
