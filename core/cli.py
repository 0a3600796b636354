"""The ``likeness`` command line.

Each subcommand lives next to the code it drives and exposes
``add_parser(subparsers)``, which registers itself and sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bridge import __version__

# Modules that provide subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "core.doctor",
    "core.bench.cli",
    "core.template.cli",
    "core.fit.cli",
    "core.batch.cli",
    "core.server.cli",
)


class CommandError(Exception):
    """An error the user can act on: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="likeness",
        description="Turn photos of a person into a rig-ready head mesh.",
    )
    parser.add_argument("--version", action="version", version=f"likeness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"likeness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"likeness {args.command}: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the imported module: ``python -m core.cli`` loads this file as __main__, whose
    # CommandError is not the one the subcommands raise (core.cli.CommandError).
    from core.cli import main as _main

    sys.exit(_main())
