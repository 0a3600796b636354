"""The ``likeness`` command line.

Each subcommand lives next to the code it drives and exposes
``add_parser(subparsers)``, which registers itself and sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bridge import __version__

# Modules that provide subcommands, in the order ``--help`` lists them, by command name.
COMMANDS: dict[str, str] = {
    "doctor": "core.doctor",
    "bench": "core.bench.cli",
    "template": "core.adopt.cli",
    "fit": "core.fit.cli",
    "batch": "core.batch.cli",
    "serve": "core.server.cli",
}


class CommandError(Exception):
    """An error the user can act on: printed without a traceback, exit code 2."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` (a name in ``COMMANDS``) only that subcommand is
    registered, so running one command does not import every other one's modules."""
    parser = argparse.ArgumentParser(
        prog="likeness",
        description="Turn photos of a person into a rig-ready head mesh.",
    )
    parser.add_argument("--version", action="version", version=f"likeness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    # Only a bare command name as the first word narrows the parser (``likeness --help``,
    # ``likeness --version`` and unknown commands get the whole one and its messages).
    command = first if first in COMMANDS and argv and argv[0] == first else None
    parser = build_parser(command)
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
