"""Layering: core/ and bridge/ never import Blender; addon/ and bridge/ never import torch or core."""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "core": {"bpy", "bmesh", "mathutils", "bpy_extras", "gpu"},
    "bridge": {"bpy", "bmesh", "mathutils", "bpy_extras", "gpu", "torch", "core", "cv2", "scipy"},
    "addon": {"torch", "core", "cv2", "scipy"},
}


def imported_roots(path: pathlib.Path) -> set[tuple[str, int]]:
    """Top-level module names a file imports absolutely, with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add((alias.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add((node.args[0].value.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    files = sorted((REPO / layer).rglob("*.py"))
    assert files, f"{layer}/ has no Python files"
    bad = []
    for path in files:
        for name, line in imported_roots(path):
            if name in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_checker_catches_violations(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("import os\nfrom bpy import types\nimport importlib\nimportlib.import_module('torch.nn')\n")
    names = {n for n, _ in imported_roots(sample)}
    assert {"bpy", "torch", "os"} <= names


def test_bridge_uses_relative_imports_only():
    """bridge/ must work as `<extension>.bridge` inside Blender: no absolute self-imports."""
    bad = []
    for path in sorted((REPO / "bridge").rglob("*.py")):
        for name, line in imported_roots(path):
            if name == "bridge":
                bad.append(f"{path.relative_to(REPO)}:{line}")
    assert not bad, bad
