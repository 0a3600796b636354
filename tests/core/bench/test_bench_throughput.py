"""`likeness bench throughput`: the same photos fitted in one process and on a local 2-worker Ray, timed whole,
with every row's results compared to the one-process fit person by person."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from conftest import GRACE_HOPPER

TINY = json.dumps({"stages": {"rig": {"iterations": 5}, "joint": {"iterations": 2}, "vertex": {"iterations": 2}}})
ROW_KEYS = {"device", "batch", "heads_per_min", "seconds_per_head", "max_mm_vs_solo"}


def test_throughput_rows_time_the_same_fits_in_a_process_and_on_ray(tmp_path):
    from skimage import data

    from core.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(GRACE_HOPPER, photos / "a_grace.jpg")
    Image.fromarray(data.astronaut()).save(photos / "b_astronaut.png")
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(photos / "c_noise.png")
    out = tmp_path / "bench.json"
    rc = main(["bench", "throughput", "--photos", str(photos), "--threads", "1", "--workers", "2", "--preset", "draft",
               "--schedule", TINY, "--batch", "3", "--out", str(tmp_path / "runs"), "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["workers"], r["threads"], r["batch"]) for r in rows] == \
        [("process", 1, 1, 1), ("process", 1, 1, 3), ("ray", 2, 1, 1), ("ray", 2, 1, 3)]
    for r in rows:
        assert ROW_KEYS <= set(r) and r["device"] == "cpu"
        # the photo without a face is a failed person in both rows; the two faces are fitted
        assert (r["heads"], r["failed"]) == (2, 1), r
        assert r["heads_per_min"] > 0 and abs(r["heads_per_min"] * r["seconds_per_head"] - 60.0) < 0.1, r
        assert 0 < r["fit_seconds_per_head"] < r["seconds"], r
    # The same fit wherever it runs: the first row is the reference, and a Ray worker (one torch and one
    # OpenMP thread, as the process row) gives the very same vertices.
    assert rows[0]["max_mm_vs_solo"] == 0.0
    assert rows[2]["max_mm_vs_solo"] == 0.0, rows[2]
    # The batched rows: the two faces in one optimisation (the third failed before it), in a process and in
    # a Ray task, one thread each: their heads are their solo fits bit for bit (the README, *Many people in
    # one optimisation*).
    for r in (rows[1], rows[3]):
        assert r["max_mm_vs_solo"] == 0.0, r


@pytest.mark.parametrize("extra, words", [
    (["--photos", "no/such/photo.jpg"], "no such file"),
    (["--threads", "one"], "whole numbers"),
    (["--workers", "0"], ">= 1"),
    (["--threads", "", "--workers", ""], "nothing to measure"),
    (["--count", "0"], "--count"),
])
def test_bad_arguments_are_one_line_errors(extra, words, tmp_path, capsys):
    from core.cli import main

    assert main(["bench", "throughput", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())  # nothing was run


def test_synthetic_rows_time_the_optimisation_alone_one_and_several_at_a_time(tmp_path):
    from core.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "throughput", "--synthetic", "2", "--batch", "2", "--preset", "draft", "--schedule", TINY,
               "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["batch"], r["heads"], r["failed"]) for r in rows] == [("synthetic", 1, 2, 0),
                                                                               ("synthetic", 2, 2, 0)]
    for r in rows:
        assert ROW_KEYS <= set(r) and r["device"] == "cpu" and r["gpu_mb_per_head"] is None
        assert 0 < r["optimise_seconds_per_head"] < r["seconds_per_head"], r
    assert rows[0]["max_mm_vs_solo"] == 0.0 and rows[1]["max_mm_vs_solo"] is not None
    assert main(["bench", "throughput", "--synthetic", "2", "--solo", "3"]) == 2
