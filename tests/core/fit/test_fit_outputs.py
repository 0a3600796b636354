"""Result sets appear together or not at all: signals at many points of the move, foreign files, symlinks."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core.fit.result_set import REPORT, ResultSetError, publish_result_set, read_result_set

WRITER = textwrap.dedent(
    """
    import pathlib, sys, tempfile, time
    import core.fit.result_set as outputs
    out, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
    outputs._after_each_move = lambda: time.sleep(0.004)  # widen the window a signal can hit
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".likeness-", dir=out))
    for i in range(12):
        (staging / f"part{i:02d}.bin").write_bytes(tag.encode() * (1000 + i))
    print("ready", flush=True)
    sys.stdin.readline()
    outputs.publish_result_set(out, staging, {"tag": tag})
    """
)


def _files(out: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != REPORT}


def test_signals_at_many_points_leave_old_or_new_never_a_mix(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the artist's notes")
    seen = {"old": 0, "new": 0, "refused": 0}
    for k in range(30):
        old = out / f".likeness-old{k}"  # every run starts from a complete older set
        old.mkdir()
        (old / "part00.bin").write_bytes(b"old")
        publish_result_set(out, old, {"tag": "old"})
        sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[k % 3]
        tag = f"run{k}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), tag], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=os.environ)
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("\n")
        proc.stdin.flush()
        time.sleep(0.006 * (k // 3))  # from before the first move to after the last (12 moves of >= 4 ms)
        proc.send_signal(sig)
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
        assert (out / "mine.txt").read_text() == "the artist's notes"  # never touched
        try:
            report = read_result_set(out)
        except ResultSetError:
            # only SIGKILL can stop a move halfway; a held-off signal leaves the old set or the new one
            assert sig == signal.SIGKILL, f"{sig!r} left a set that does not match its report"
            seen["refused"] += 1
            continue
        assert report["tag"] in ("old", tag) and set(report["files"]) <= set(_files(out))
        seen["new" if report["tag"] == tag else "old"] += 1
    assert seen["new"] and seen["old"] and seen["refused"], seen
    # the next complete run replaces whatever an interrupted one left
    staging = tmp_path / "out" / ".likeness-final"
    staging.mkdir()
    (staging / "part00.bin").write_bytes(b"final")
    publish_result_set(out, staging, {"tag": "final"})
    report = read_result_set(out)
    assert report["tag"] == "final" and set(report["files"]) == {"part00.bin"}
    assert {p.name for p in out.iterdir() if p.is_file()} == {"part00.bin", REPORT, "mine.txt"}


def test_foreign_files_and_links_are_never_written_through(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("keep")
    (out / "part00.bin").symlink_to(secret)  # a planted link at an output name
    staging = out / ".likeness-a"
    staging.mkdir()
    (staging / "part00.bin").write_bytes(b"new")
    with pytest.raises(ResultSetError, match="part00.bin that Likeness did not write"):
        publish_result_set(out, staging, {})
    assert secret.read_text() == "keep" and (out / "part00.bin").is_symlink()
    (out / REPORT).write_text("{}")  # someone else's report.json
    (out / "part00.bin").unlink()
    with pytest.raises(ResultSetError, match="report.json"):
        publish_result_set(out, staging, {})
    assert (out / REPORT).read_text() == "{}"


def test_a_tampered_set_is_refused(tmp_path):
    staging = tmp_path / ".likeness-b"
    staging.mkdir()
    (staging / "result.obj").write_text("v 0 0 0\n")
    publish_result_set(tmp_path, staging, {})
    assert set(read_result_set(tmp_path)["files"]) == {"result.obj"}
    (tmp_path / "result.obj").write_text("v 1 0 0\n")
    with pytest.raises(ResultSetError, match="does not match"):
        read_result_set(tmp_path)
    report = json.loads((tmp_path / REPORT).read_text())
    report["files"]["../etc"] = report["files"].pop("result.obj")
    (tmp_path / REPORT).write_text(json.dumps(report))
    with pytest.raises(ResultSetError, match="not a file name"):
        read_result_set(tmp_path)
