"""The console script is installed and answers."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import bridge

BIN = pathlib.Path(sys.executable).parent


def test_console_script_version():
    out = subprocess.run([str(BIN / "likeness"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"likeness {bridge.__version__}"


def test_doctor_json():
    out = subprocess.run([str(BIN / "likeness"), "doctor", "--json"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["torch"].startswith("2.13.0")
    assert "cpu" in info["devices"]
    assert info["face_prior"].startswith("ok (")


def test_unknown_command_fails():
    out = subprocess.run([str(BIN / "likeness"), "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_a_command_builds_only_its_own_parser():
    """``likeness fit ...`` registers only ``fit`` (no other command's imports); the bare
    ``likeness`` parser still lists every command."""
    from core.cli import COMMANDS, build_parser

    whole = build_parser()
    names = whole._subparsers._group_actions[0].choices
    assert list(names) == list(COMMANDS)
    assert list(build_parser("fit")._subparsers._group_actions[0].choices) == ["fit"]
