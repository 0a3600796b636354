"""Helpers shared by the add-on tests (no tests here): install the built extension, a recording UILayout, pumping the timer."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

from conftest import REPO, blender_ext_tool

MODULE = "bl_ext.user_default.likeness"


def build_zip(out: pathlib.Path) -> pathlib.Path:
    subprocess.run(blender_ext_tool() + ["build", "--source-dir", str(REPO), "--output-dir", str(out)],
                   check=True, capture_output=True, text=True)
    (zip_path,) = out.glob("likeness-*.zip")
    return zip_path


def install(bpy, zip_path: pathlib.Path):
    assert bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True) == {"FINISHED"}
    return sys.modules[MODULE]


def uninstall(bpy) -> None:
    if MODULE in bpy.context.preferences.addons:
        bpy.ops.preferences.addon_disable(module=MODULE)
    repos = bpy.context.preferences.extensions.repos
    index = next(i for i, r in enumerate(repos) if r.module == "user_default")
    bpy.ops.extensions.package_uninstall(repo_index=index, pkg_id="likeness")


class RecordingLayout:
    """Stands in for bpy.types.UILayout (panels are never drawn in module mode): records what is referenced."""

    def __init__(self, log=None):
        self.log = log if log is not None else {"props": [], "operators": [], "lists": [], "labels": [],
                                                  "progress": []}
        self.enabled = True
        self.active = True
        self.alert = False

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.log)

    row = column = box = split = column_flow = grid_flow = _child

    def prop(self, data, name, **kwargs):
        self.log["props"].append((data, name))

    def operator(self, idname, **kwargs):
        self.log["operators"].append(idname)
        return _OperatorProps()

    def label(self, text="", **kwargs):
        self.log["labels"].append(text)

    def separator(self, **kwargs):
        pass

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log["progress"].append((factor, text))

    def template_list(self, list_type, list_id, dataptr, propname, active_dataptr, active_propname, **kwargs):
        self.log["lists"].append((list_type, dataptr, propname, active_dataptr, active_propname))


class _OperatorProps:
    """What ``layout.operator`` returns: attributes set on it are operator properties."""


def pump(tick, until, timeout: float, interval: float = 0.005):
    """Call the add-on's timer callback until ``until()`` is true (module mode never fires timers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        if until():
            return True
        time.sleep(interval)
    return until()
