"""`likeness batch` on a real local Ray cluster (2 workers): people from files and folders, a bad photo in
the middle, results keyed by content, a rerun that skips what is done, a killed worker whose task is retried."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import GRACE_HOPPER, REPO

PHOTO = str(GRACE_HOPPER)
TINY = json.dumps({"stages": {"rig": {"iterations": 5}, "joint": {"iterations": 2}, "vertex": {"iterations": 2}}})
BATCH = [sys.executable, "-m", "core.cli", "batch", "--workers", "2", "--preset", "draft", "--schedule", TINY]


def _photos(root):
    from PIL import Image
    from skimage import data

    (root / "set_b").mkdir(parents=True)
    shutil.copy(PHOTO, root / "a_grace.jpg")
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(root / "b_noise.png")
    Image.fromarray(data.astronaut()).save(root / "set_b" / "front.png")
    (root / "notes.txt").write_text("not a photo")


def test_people_and_content_keys(tmp_path):
    from core.batch.people import BatchInputError, collect_people

    _photos(tmp_path / "in")
    people = collect_people([str(tmp_path / "in")], {"preset": "draft"})
    assert [p.name for p in people] == ["a_grace", "b_noise", "set_b"]
    assert len(people[2].photos) == 1 and people[2].photos[0].endswith("front.png")
    # the key follows the bytes and the options, not the file name
    shutil.copy(PHOTO, tmp_path / "renamed.jpg")
    again = collect_people([str(tmp_path / "renamed.jpg")], {"preset": "draft"})[0]
    assert again.key == people[0].key
    assert collect_people([str(tmp_path / "renamed.jpg")], {"preset": "high"})[0].key != people[0].key
    for bad, words in ((tmp_path / "nothing", "no such"), (tmp_path / "in" / "notes.txt", "not a photo")):
        with pytest.raises(BatchInputError, match=words):
            collect_people([str(bad)], {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="no photos"):
        collect_people([str(tmp_path / "empty")], {})


def test_batch_on_local_ray_fits_reports_a_bad_photo_and_a_rerun_skips_what_is_done(tmp_path):
    from core.fit.result_set import read_result_set

    _photos(tmp_path / "in")
    out = tmp_path / "out"
    run = subprocess.run(BATCH + [str(tmp_path / "in"), "--out", str(out)], capture_output=True, text=True,
                         timeout=900, cwd=REPO)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]  # one person failed
    summary = json.loads((out / "summary.json").read_text())
    rows = {os.path.basename(r["photo"]): r for r in summary["photos"]}
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (2, 1, 0)
    assert rows["b_noise.png"]["status"] == "failed" and "NoFaceError" in rows["b_noise.png"]["error"]
    assert set(summary["photos"][0]) == {"photo", "status", "seconds", "error", "out"}
    for name in ("a_grace.jpg", "front.png"):
        assert rows[name]["status"] == "ok"
        report = read_result_set(rows[name]["out"])  # a complete, verified result set
        assert "result.glb" in report["files"] and "result.obj" in report["files"]
    assert "heads/min" in run.stdout
    again = subprocess.run(BATCH + [str(tmp_path / "in"), "--out", str(out)], capture_output=True, text=True,
                           timeout=600, cwd=REPO)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (0, 1, 2), again.stderr[-2000:]


def _worker_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ray::fit_people"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_a_killed_worker_has_its_task_retried(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(PHOTO, tmp_path / "in" / "grace.jpg")
    out = tmp_path / "out"
    proc = subprocess.Popen(BATCH + [str(tmp_path / "in"), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not _worker_pids():
            assert proc.poll() is None and time.monotonic() < deadline, "no worker ever ran the task"
            time.sleep(0.2)
        time.sleep(1.0)  # inside the fit
        for pid in _worker_pids():
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 1 and summary["photos"][0]["status"] == "ok"
