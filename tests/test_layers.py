"""Layering: core/ and bridge/ never import Blender; addon/ and bridge/ never import torch or core;
inside core/, packages import one way (CORE_TIERS), without cycles or each other's private names."""

from __future__ import annotations

import ast
import dataclasses
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


# --- Inside core/: one-way imports between its packages -------------------------------------------

# core's packages (and top-level modules) from the bottom up. A module imports only from its own
# package or from a lower tier; the packages of one tier do not import each other. core.cli sits at
# the bottom: it holds CommandError for every subcommand and names the subcommand modules only as
# strings (COMMANDS), imported when the parser is built. core.export sits above
# core.geometry: the writers triangulate and take vertex normals from core.geometry.mesh_layout.
CORE_TIERS: tuple[tuple[str, ...], ...] = (
    ("core.files", "core.cli", "core.geometry"),
    ("core.export", "core.render", "core.losses"),
    ("core.template",),
    ("core.priors", "core.texture", "core.multiview"),
    ("core.fit", "core.adopt"),
    ("core.batch",),  # studio batches; the benchmarks time them (core.bench.throughput)
    ("core.bench", "core.server", "core.doctor"),
)


@dataclasses.dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` (a module), ``name`` from it when there is one."""

    source: str
    target: str
    name: str | None
    where: str  # "path:line"


def module_names(root: pathlib.Path, package: str) -> dict[str, pathlib.Path]:
    """Dotted name -> file of every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_edges(root: pathlib.Path, package: str = "core") -> list[Edge]:
    """Every import inside ``package`` of a module of ``package``: module level and inside
    functions, absolute and relative, ``importlib.import_module("...")`` with a literal name,
    and attribute reads ``module._name`` on an imported module (as a ``name``)."""
    modules = module_names(root, package)

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    edges = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        here = source if path.name == "__init__.py" else source.rpartition(".")[0]
        aliases: dict[str, str] = {}

        def add(target: str, name: str | None, node: ast.AST) -> None:
            module = resolve(target)
            if module is not None and (module.partition(".")[0] == package):
                edges.append(Edge(source, module, name, f"{path.relative_to(root)}:{node.lineno}"))

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, None, node)
                    if alias.asname and alias.name in modules:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:  # a submodule: the edge goes to it
                        add(full, alias.name, node)
                        aliases[alias.asname or alias.name] = full
                    else:
                        add(base, alias.name, node)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__",
            ):
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    add(node.args[0].value, None, node)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")):
                add(aliases[node.value.id], node.attr, node)
    return edges


def unit_of(module: str) -> str:
    """The package a module belongs to for layering: ``core.fit.loop`` -> ``core.fit``."""
    return ".".join(module.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def shortest_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest way from the component's first node back to itself (breadth first)."""
    first, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == first:
                    path = [v]
                    while path[-1] != first:
                        path.append(came_from[path[-1]])
                    return [first, *reversed(path[:-1]), first]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a cycle")


def cycle_problems(edges: list[Edge]) -> list[str]:
    """Import cycles between packages, then between modules: one shortest cycle each, with a line per step."""
    problems = []
    for key in (unit_of, lambda m: m):
        graph: dict[str, set[str]] = {}
        where: dict[tuple[str, str], str] = {}
        for e in edges:
            a, b = key(e.source), key(e.target)
            if a != b:
                graph.setdefault(a, set()).add(b)
                where.setdefault((a, b), e.where)
        for component in cycles(graph):
            path = shortest_cycle(component, graph)
            steps = [f"{a} -> {b} ({where[a, b]})" for a, b in zip(path, path[1:])]
            problems.append("cycle: " + "; ".join(steps))
    return problems


def upward_problems(edges: list[Edge], tiers) -> list[str]:
    """Imports from a package to one in the same or a higher tier, and packages no tier names."""
    tier = {unit: i for i, names in enumerate(tiers) for unit in names}
    problems = []
    for e in edges:
        src, dst = unit_of(e.source), unit_of(e.target)
        if src == dst or src == "core":
            continue
        missing = [u for u in (src, dst) if u not in tier]
        if missing:
            problems.append(f"{e.where}: {', '.join(missing)} is in no tier of CORE_TIERS")
        elif tier[dst] >= tier[src]:
            way = "sideways" if tier[dst] == tier[src] else "upward"
            problems.append(f"{e.where}: {way} import {src} -> {dst}")
    return list(dict.fromkeys(problems))


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_problems(edges: list[Edge]) -> list[str]:
    """Private names (``_x``) used outside their module; a private module outside its package."""
    problems = []
    for e in edges:
        parts = e.target.split(".")
        hidden = next((i for i, part in enumerate(parts) if is_private(part)), None)
        if hidden is not None:
            home = ".".join(parts[:hidden])
            if not (e.source == home or e.source.startswith(home + ".")):
                problems.append(f"{e.where}: {e.source} imports private module {e.target}")
        elif e.name is not None and is_private(e.name) and e.source != e.target:
            problems.append(f"{e.where}: {e.source} imports private {e.target}.{e.name}")
    return list(dict.fromkeys(problems))


@pytest.fixture(scope="module")
def core_edges() -> list[Edge]:
    return import_edges(REPO)


def test_core_has_no_import_cycles(core_edges):
    problems = cycle_problems(core_edges)
    assert not problems, "\n".join(problems)


def test_core_imports_only_downward(core_edges):
    problems = upward_problems(core_edges, CORE_TIERS)
    assert not problems, "layering (CORE_TIERS) broken:\n" + "\n".join(problems)


def test_core_tiers_name_every_package():
    named = [u for names in CORE_TIERS for u in names]
    assert len(named) == len(set(named)), "a package is in two tiers"
    present = {unit_of(m) for m in module_names(REPO, "core")} - {"core"}
    assert present == set(named), f"not in CORE_TIERS: {sorted(present - set(named))}; gone: {sorted(set(named) - present)}"


def test_core_imports_no_private_names_across_modules(core_edges):
    problems = private_problems(core_edges)
    assert not problems, "\n".join(problems)


def test_core_checks_catch_planted_problems(tmp_path):
    """A small tree with one problem of each kind; relative and importlib imports count too."""
    files = {
        "core/__init__.py": "",
        "core/low/__init__.py": "",
        "core/low/a.py": (
            "def f():\n"
            "    from ..high import b  # relative, inside a function: upward, and a cycle with high\n"
            "def g():\n"
            "    import importlib\n"
            "    return importlib.import_module('core.side.c')  # sideways\n"
        ),
        "core/low/_backend.py": "",
        "core/low/front.py": "from . import _backend  # its own package: fine\n",
        "core/side/__init__.py": "",
        "core/side/c.py": "from core.low import _backend\nfrom core.low.a import _hidden\n",
        "core/high/__init__.py": "from .b import run\n",
        "core/high/b.py": "import core.low.a as a\nfrom core.high import d\ndef run():\n    return a._hidden\n",
        "core/high/d.py": "from .b import run\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges = import_edges(tmp_path)
    cyc = cycle_problems(edges)
    assert any("core.low -> core.high" in c and "core.high -> core.low" in c for c in cyc), cyc
    assert any("core.high.b -> core.high.d" in c and "core.high.d -> core.high.b" in c for c in cyc), cyc
    up = upward_problems(edges, (("core.low", "core.side"), ("core.high",)))
    assert "core/low/a.py:2: upward import core.low -> core.high" in up
    assert "core/low/a.py:5: sideways import core.low -> core.side" in up
    assert not any("core/high/b.py" in u for u in up), up
    assert any("core.side is in no tier" in u for u in upward_problems(edges, (("core.low",), ("core.high",))))
    private = private_problems(edges)
    assert sorted(private) == [
        "core/high/b.py:4: core.high.b imports private core.low.a._hidden",
        "core/side/c.py:1: core.side.c imports private module core.low._backend",
        "core/side/c.py:2: core.side.c imports private core.low.a._hidden",
    ], private


def test_scripts_share_public_names_only():
    """scripts/ import each other's public names (blender_scene.py is their shared scene builder)."""
    scripts = {p.stem for p in (REPO / "scripts").glob("*.py")}
    bad = []
    for path in sorted((REPO / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in scripts:
                bad += [f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}.{a.name}"
                        for a in node.names if is_private(a.name)]
    assert not bad, "\n".join(bad)
