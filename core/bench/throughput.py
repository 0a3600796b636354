"""Heads per minute: many people fitted in one process, or as a ``likeness batch`` on a local Ray.

Each row fits the same N photos (one person each) from scratch in a fresh
process and times it whole, start-up included, as a studio would see it:

- ``process``: one Python process fits the people in turn (``core.batch.work``,
  the template loaded once) with ``--threads`` torch threads, one row per
  thread count;
- ``ray``: ``likeness batch PHOTOS --workers W --threads 1`` starts its own
  local Ray with W workers, one row per worker count.

- ``process`` with ``batch`` B > 1 (``--batch``): the same process at the first
  thread count, B people at a time in one batched optimisation
  (``core/fit/people.py``);
- ``ray`` with ``batch`` B > 1: ``likeness batch`` with the most ``--workers``
  and ``--people-per-task B`` (each task one batched optimisation).

The other rows are one person per optimisation (``batch`` 1). ``max_mm_vs_solo`` is the largest vertex
distance between a row's results and the first row's (one process, first
thread count), person by person: the same fit wherever it runs. ``fit_seconds
per head`` is the mean of the people's own fit times (without start-up); on
CUDA ``gpu_mb_per_head`` is the process's peak allocation.

``--synthetic N`` measures the optimisation alone, in this process, with no
detector (it runs where only torch is, as ``scripts/gpu_check.sh`` does): N of
``bench fit``'s synthetic people (exact normal maps and landmarks, one view
each, the full stages), fitted one at a time (the ``batch`` 1 row, the
reference) and then B at a time in one batched optimisation for each
``--batch`` B, on ``--device``.

Photos: ``--photos`` (files or folders, as ``likeness batch`` takes them), or
by default the first ``--count`` of ``bench photo``'s renders of its eight
people (JPEG with EXIF, seven views each, every view a person of its own),
rendered in Blender when the cache lacks them.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from core.cli import CommandError

REPO = pathlib.Path(__file__).resolve().parents[2]


def add_arguments(p) -> None:
    p.add_argument("--photos", nargs="*", default=None, metavar="PHOTO_OR_FOLDER",
                   help="photos to fit (default: bench photo's renders)")
    p.add_argument("--count", type=int, default=16, help="how many of bench photo's renders (default 16)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts for the process rows "
                                                   "(empty: none)")
    p.add_argument("--batch", default="", help="comma-separated people per batched optimisation for more process "
                                               "rows at the first thread count (e.g. 8,32; empty: none)")
    p.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts (empty: no Ray rows)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="time the optimisation alone on N synthetic people, one at a time and --batch at a time")
    p.add_argument("--solo", type=int, default=None, metavar="K",
                   help="with --synthetic: the one-at-a-time row fits only the first K people (default all); "
                        "max_mm_vs_solo compares those")
    p.add_argument("--preset", default="default", choices=("draft", "default", "high"))
    p.add_argument("--schedule", default=None, metavar="JSON", help="schedule overrides for every fit")
    p.add_argument("--out", default="out/bench_throughput", help="folder for the rows' results")
    p.add_argument("--cache", default=None, help="bench photo's render cache (default $LIKENESS_CACHE/photo)")


def _ints(text: str, flag: str, least: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CommandError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if any(v < least for v in values):
        raise CommandError(f"{flag}: every count must be >= {least}, got {text!r}")
    return values


def default_photos(count: int, cache_arg: str | None) -> list[str]:
    """The first ``count`` JPEGs of bench photo's people, person by person, view by view (rendered if missing)."""
    from core.bench.photo import HELD_OUT_SEEDS, TUNE_SEEDS, VIEW_ANGLES, cache_root, person_look, render_person
    from core.bench.synthetic import make_person
    from core.template import load_default

    template = load_default()
    render_args = argparse.Namespace(width=384, height=480, samples=24)  # bench photo's defaults
    names = list(VIEW_ANGLES)
    photos: list[str] = []
    for seed in (*TUNE_SEEDS, *HELD_OUT_SEEDS):
        if len(photos) >= count:
            break
        person = make_person(template, seed)
        look = person_look(seed, person.ethnicity)
        folder, _, _ = render_person(template, person, look, "neutral", names, render_args, cache_root(cache_arg))
        photos += [str(folder / f"{n}.jpg") for n in names]
    if len(photos) < count:
        raise CommandError(f"--count {count}: bench photo has {len(photos)} photos; pass --photos for more")
    return photos[:count]


def _fit_args(args) -> list[str]:
    return ["--preset", args.preset, *(["--schedule", args.schedule] if args.schedule else [])]


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: somebody failed, which the rows report
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def _people(photos: list[str], args) -> list:
    """The people the photos name (as ``likeness batch`` reads and keys them), else a one-line CommandError."""
    from core.batch.cli import batch_options
    from core.batch.people import BatchInputError, collect_people

    options, _ = batch_options(argparse.Namespace(device=args.device, preset=args.preset, schedule=args.schedule,
                                                  focal="auto"))
    try:
        return collect_people(photos, options)
    except BatchInputError as exc:
        raise CommandError(f"--photos {exc}") from None


def _results(people: list, out: pathlib.Path) -> dict:
    """person key -> (fit seconds, neutral vertices or None) from the row's output folder."""
    rows = {r["out"]: r for r in json.loads((out / "summary.json").read_text())["photos"]}
    found = {}
    for person in people:
        folder = person.folder(out)
        row = rows.get(str(folder), {})
        verts = None
        if row.get("status") == "ok":
            with np.load(folder / "result.npz") as z:
                verts = z["verts_neutral"].astype(np.float64)
        found[person.key] = (float(row.get("seconds", 0.0)), verts)
    return found


def run(args) -> dict:
    if args.synthetic:
        return run_synthetic(args)
    threads, batches, workers = (_ints(args.threads, "--threads", 1), _ints(args.batch, "--batch", 2),
                                 _ints(args.workers, "--workers", 1))
    plans = [("process", 1, t, 1) for t in threads] + \
            [("process", 1, threads[0] if threads else 1, b) for b in batches] + \
            [("ray", w, 1, 1) for w in workers] + [("ray", max(workers), 1, b) for b in batches if workers]
    if not plans:
        raise CommandError("--threads and --workers are both empty: nothing to measure")
    if args.photos is not None and not args.photos:
        raise CommandError("--photos needs at least one photo or folder")
    if args.count < 1:
        raise CommandError(f"--count must be >= 1, got {args.count}")
    photos = args.photos or default_photos(args.count, args.cache)
    people = _people(photos, args)
    out_root = pathlib.Path(args.out).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    rows, solo = [], None
    for mode, workers, threads, batch in plans:
        out = pathlib.Path(tempfile.mkdtemp(prefix=f"{mode}-w{workers}-t{threads}-b{batch}-", dir=out_root))
        if mode == "process":
            spec = {"photos": photos, "out": str(out), "device": args.device, "threads": threads,
                    "preset": args.preset, "schedule": args.schedule, "batch": batch}
            # OpenMP's thread count set as Ray sets it in its workers (one per CPU a task asks for): it
            # changes float rounding in the libraries below torch, and the fit turns that into
            # different results (see the README, *Studio batches on Ray*).
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            seconds, stdout = _timed([sys.executable, "-m", "core.bench.throughput", json.dumps(spec)], env)
            gpu_bytes = json.loads(stdout.strip().splitlines()[-1])["gpu_peak_bytes"]
        else:
            seconds, _ = _timed([sys.executable, "-m", "core.cli", "batch", *photos, "--out", str(out),
                                 "--workers", str(workers), "--threads", str(threads), "--device", args.device,
                                 "--people-per-task", str(batch),
                                 *_fit_args(args)])
            gpu_bytes = None
        found = _results(people, out)
        fitted = [k for k, (_, v) in found.items() if v is not None]
        if solo is None:
            solo = found
        gaps = [1000.0 * float(np.linalg.norm(found[k][1] - solo[k][1], axis=1).max())
                for k in fitted if solo.get(k, (0, None))[1] is not None]
        row = {"device": args.device, "batch": batch, "mode": mode, "workers": workers, "threads": threads,
               "heads": len(fitted), "failed": len(found) - len(fitted), "seconds": round(seconds, 2),
               "heads_per_min": round(60.0 * len(fitted) / seconds, 2) if fitted else 0.0,
               "seconds_per_head": round(seconds / len(fitted), 3) if fitted else None,
               "fit_seconds_per_head": round(float(np.mean([found[k][0] for k in fitted])), 3) if fitted else None,
               "gpu_mb_per_head": None if gpu_bytes is None else round(gpu_bytes / 2**20, 1),
               "max_mm_vs_solo": round(max(gaps), 4) if gaps else None}
        rows.append(row)
        print(f"{mode} workers {workers} threads {threads} batch {batch}: {row['heads']} heads in {seconds:.1f} s, "
              f"{row['heads_per_min']} heads/min", flush=True)
    best_process = max((r["heads_per_min"] for r in rows if r["mode"] == "process"), default=None)
    for r in rows:
        r["vs_best_process"] = round(r["heads_per_min"] / best_process, 3) if best_process else None
    return {"rows": rows, "photos": photos, "preset": args.preset, "schedule": args.schedule,
            "table": rows}


def run_synthetic(args) -> dict:
    """Rows of the optimisation alone: N synthetic people one at a time, then ``--batch`` B at a time."""
    import torch

    from core.bench.synthetic import make_case
    from core.fit.options import FitOptions
    from core.fit.people import fit_people
    from core.fit.pipeline import fit_views
    from core.template import load_default

    batches = _ints(args.batch, "--batch", 2)
    if args.synthetic < 1:
        raise CommandError(f"--synthetic must be >= 1, got {args.synthetic}")
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise CommandError(f"--device {args.device}: {exc}") from None
    template = load_default()
    options = FitOptions(preset=args.preset, schedule=json.loads(args.schedule) if args.schedule else {})
    views = [[make_case(template, seed=i).view] for i in range(args.synthetic)]
    cuda = device.type == "cuda"

    def timed(fn):
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize(device)
        return out, time.perf_counter() - t0, torch.cuda.max_memory_allocated(device) if cuda else None

    solo_count = args.synthetic if args.solo is None else args.solo
    if not 1 <= solo_count <= args.synthetic:
        raise CommandError(f"--solo must be between 1 and --synthetic ({args.synthetic}), got {solo_count}")

    def solo():
        out = []
        for v in views[:solo_count]:
            for rec in fit_views(template, v, options, device=args.device):
                pass
            out.append(rec.result)
        return out

    reference, seconds, peak = timed(solo)
    rows = [_synthetic_row(args.device, 1, reference, reference, seconds, peak)]
    print(f"synthetic, one at a time: {rows[0]['heads_per_min']} heads/min", flush=True)
    for b in batches:
        results, seconds, peak = timed(lambda: fit_people(template, views, options, device=args.device, batch_size=b))
        rows.append(_synthetic_row(args.device, b, results, reference, seconds, peak))
        print(f"synthetic, {b} at a time: {rows[-1]['heads_per_min']} heads/min, "
              f"{rows[-1]['max_mm_vs_solo']} mm from one at a time", flush=True)
    for r in rows:
        r["vs_one_at_a_time"] = round(r["heads_per_min"] / rows[0]["heads_per_min"], 3)
    return {"rows": rows, "synthetic": args.synthetic, "preset": args.preset, "schedule": args.schedule,
            "table": rows}


def _synthetic_row(device: str, batch: int, results: list, reference: list, seconds: float, peak) -> dict:
    n = sum(not isinstance(r, Exception) for r in results)
    # The optimisation's share of the time (the rest: PnP, the result's rig-ready touches, expression keys).
    opt = sum(r.meta["batch"]["fit_seconds"] / r.meta["batch"]["people"] if "batch" in r.meta
              else sum(st["seconds"] for st in r.meta["stages"]) for r in results if not isinstance(r, Exception))
    fitted = [(r, s) for r, s in zip(results, reference) if not isinstance(r, Exception)]
    dists = [1000.0 * np.linalg.norm(r.arrays["verts"] - s.arrays["verts"], axis=1) for r, s in fitted]
    gaps, means = [float(d.max()) for d in dists], [float(d.mean()) for d in dists]
    return {"device": device, "batch": batch, "mode": "synthetic", "heads": n, "failed": len(results) - n,
            "seconds": round(seconds, 2), "heads_per_min": round(60.0 * n / seconds, 2) if n else 0.0,
            "seconds_per_head": round(seconds / n, 3) if n else None,
            "optimise_seconds_per_head": round(opt / n, 3) if n else None,
            "gpu_mb_per_head": None if peak is None else round(peak / 2**20 / min(batch, max(n, 1)), 1),
            "max_mm_vs_solo": round(max(gaps), 4) if gaps else None,
            "mean_mm_vs_solo": round(float(np.mean(means)), 5) if means else None}


def _process_row(spec: dict) -> None:
    """One process row: fit the people in turn here, write summary.json as ``likeness batch`` does, and
    print the peak GPU allocation as the last line."""
    import torch

    from core.batch.cli import batch_options, write_summary
    from core.batch.people import collect_people
    from core.batch.work import fit_people

    ns = argparse.Namespace(device=spec["device"], preset=spec["preset"], schedule=spec["schedule"], focal="auto")
    options, fit_options = batch_options(ns)
    people = collect_people(spec["photos"], options)
    out = pathlib.Path(spec["out"])
    batch = int(spec.get("batch", 1))
    rows = []
    for i in range(0, len(people), batch):
        rows += fit_people(people[i:i + batch], str(out), fit_options, spec["device"], spec["threads"],
                           together=batch > 1)
    write_summary(out, rows)
    cuda = torch.device(spec["device"]).type == "cuda"
    print(json.dumps({"gpu_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None}))


if __name__ == "__main__":
    _process_row(json.loads(sys.argv[1]))
