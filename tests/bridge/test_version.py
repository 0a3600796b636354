"""One version number: bridge/_version.py, read by pyproject, manifest and code alike."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import tomllib

import bridge
import core
from conftest import REPO



def test_versions_agree():
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "bridge._version.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", bridge.__version__)
    assert manifest["version"] == bridge.__version__
    assert core.__version__ == bridge.__version__
    assert importlib.metadata.version("likeness") == bridge.__version__


def test_manifest_fields():
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "likeness"
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"]
    assert all(reason.strip() for reason in manifest["permissions"].values())
