"""Every bad command line gives one line on stderr and exit code 2, before any fitting."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import matplotlib.cbook
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.cli import CommandError
from core.fit.cli import read_schedule

BIN = pathlib.Path(sys.executable).parent
from conftest import GRACE_HOPPER  # noqa: E402

PHOTO = str(GRACE_HOPPER)


def _cases(tmp: pathlib.Path) -> dict[str, list[str]]:
    a_file = tmp / "a-file"
    a_file.write_text("x")
    fit = ["fit", PHOTO, "--out", str(tmp / "out")]
    return {
        "schedule list": fit + ["--schedule", "[1]"],
        "iterations text": fit + ["--schedule", json.dumps({"stages": {"rig": {"iterations": "abc"}}})],
        # once tried as a file name (OSError: name too long); now read as the JSON it is
        "schedule over 255 chars": fit + ["--schedule", json.dumps({"stages": {"rig": {"lr": "x" * 300}}})],
        "out is a file": ["fit", PHOTO, "--out", str(a_file)],
        "device cuda on a cpu build": fit + ["--device", "cuda"],
        "device gpu": fit + ["--device", "gpu"],
        "template is a device": fit + ["--template", "/dev/zero"],
        "normals count": fit + ["--normals", str(a_file), str(a_file)],
        "threads below zero": fit + ["--threads", "-1"],
        "serve threads below zero": ["serve", "--threads", "-3"],
        "port out of range": ["serve", "--port", "70000"],
        "ready file in a missing folder": ["serve", "--ready-file", str(tmp / "missing" / "ready.json")],
    }


CASES = list(_cases(pathlib.Path("/tmp")).keys())


@pytest.mark.parametrize("case", CASES)
def test_bad_command_line_is_one_line_and_exit_2(case, tmp_path):
    import torch

    args = _cases(tmp_path)[case]
    if case == "device cuda on a cpu build" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = subprocess.run([str(BIN / "likeness"), *args], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr and ": error: " in lines[0], res.stderr[-2000:]



# Cases the command line alone shows wrong: answered before torch (and the fit's modules) load.
LIGHT_CASES = ["schedule list", "iterations text", "out is a file", "device gpu", "threads below zero",
               "serve threads below zero", "port out of range", "ready file in a missing folder"]
_MAIN_AND_MODULES = (
    "import sys, json\n"
    "from core.cli import main\n"
    "rc = main(json.loads(sys.argv[1]))\n"
    "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))\n"
)


def _exit_and_torch(args: list[str]) -> dict:
    """{"rc": exit code, "torch": whether torch was loaded} of ``likeness ARGS`` in a fresh process."""
    res = subprocess.run([sys.executable, "-c", _MAIN_AND_MODULES, json.dumps(args)], capture_output=True,
                         text=True, timeout=120, cwd=str(pathlib.Path(__file__).resolve().parents[2]))
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_what_the_command_line_shows_wrong_is_answered_before_torch_loads(tmp_path):
    cases = _cases(tmp_path)
    for case in LIGHT_CASES:
        seen = _exit_and_torch(cases[case])
        assert seen == {"rc": 2, "torch": False}, (case, seen)
    # The negative control: the template is checked by loading it, which needs the fit's modules.
    assert _exit_and_torch(cases["template is a device"]) == {"rc": 2, "torch": True}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["stages", "only", "rig", "joint", "vertex", "iterations", "lr", "weights", "variables", "top_k",
         "plateau_rel", "iterations_scale", "name", "x"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_schedule_json_is_accepted_or_one_line_error(value):
    from core.fit.schedule import make_schedule

    try:
        overrides = read_schedule(json.dumps(value))
    except CommandError as exc:
        assert "\n" not in str(exc)
        return
    try:
        make_schedule("draft", overrides)
    except ValueError as exc:  # the fit CLI turns these into one line too
        assert "\n" not in str(exc)
