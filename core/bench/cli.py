"""``likeness bench NAME --json F``."""

from __future__ import annotations

import importlib
import json
import pathlib

from . import BENCHMARKS


def format_table(rows: list[dict]) -> str:
    """A plain-text table from a list of flat dicts (columns from the first row)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _run(args) -> int:
    if args.list or not args.name:
        print("\n".join(sorted(BENCHMARKS)))
        return 0
    module = importlib.import_module(BENCHMARKS[args.name])
    result = module.run(args)
    rows = result.pop("table", None)
    if rows:
        print(format_table(rows))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark: prints a table, writes JSON")
    p.add_argument("--list", action="store_true", help="list the benchmarks")
    p.set_defaults(func=_run, name=None)
    names = p.add_subparsers(dest="name", metavar="NAME")
    for name, module_path in sorted(BENCHMARKS.items()):
        module = importlib.import_module(module_path)
        bp = names.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None)
        bp.add_argument("--json", metavar="F", help="write the result as JSON to F")
        bp.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
        module.add_arguments(bp)
        bp.set_defaults(func=_run, list=False)
