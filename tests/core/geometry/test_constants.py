"""Units and tolerances have one home, core/geometry/constants.py: no other core module defines them."""

from __future__ import annotations

import ast
import pathlib

from core.geometry import constants
from conftest import REPO

HOME = REPO / "core" / "geometry" / "constants.py"


def module_level_names(path: pathlib.Path) -> set[str]:
    """Names a file assigns at module level."""
    names = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_units_and_tolerances_are_defined_once():
    owned = {n for n in module_level_names(HOME) if n.isupper()}
    assert {"MM", "CM", "POINT_VISIBILITY_REL_TOL", "TEXEL_VISIBILITY_REL_TOL"} <= owned
    again = []
    for path in sorted((REPO / "core").rglob("*.py")):
        if path != HOME:
            again += [f"{path.relative_to(REPO)}: {n}" for n in sorted(module_level_names(path) & owned)]
    assert not again, "defined outside core/geometry/constants.py:\n" + "\n".join(again)


def test_units_convert_metres():
    assert 0.0015 * constants.MM == 1.5
    assert 0.25 * constants.CM == 25.0
    # The two depth tests keep their own values (see their docstrings).
    assert constants.TEXEL_VISIBILITY_REL_TOL < constants.POINT_VISIBILITY_REL_TOL
