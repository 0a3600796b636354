"""``likeness batch PHOTOS... --out DIR``: many people, on a Ray cluster (a local one by default).

Each photo file is one person; a folder holds one person per photo and one
person per sub-folder of photos (core/batch/people.py). People are split into
tasks of ``--people-per-task``; each task runs in a Ray worker with
``--gpus-per-task`` GPUs (fractions allowed) and fits its people with one photo
each in one batched optimisation (``core/fit/people.py``; ``--one-at-a-time``:
in turn), the others in turn.
Results go to ``DIR/<name>-<key>/`` (the key hashes the photos' bytes and the
options), written all or nothing, so a rerun skips what is done and a retried
task never mixes results. ``DIR/summary.json`` lists every person
(``{"photos": [{"photo", "status": "ok"|"failed"|"skipped", "seconds",
"error", "out"}], "ok", "failed", "skipped"}``). Ctrl-C cancels the tasks and
still writes the summary of what finished.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

from core.cli import CommandError

# Workers ask for one CPU each; a worker process that dies has its task retried this often.
TASK_RETRIES = 2
# Ray's shared-object store: results are small rows, so keep it small (bytes).
OBJECT_STORE_BYTES = 128 * 1024 * 1024


def batch_options(args):
    """(the options dict the people's folder keys hash, the ``FitOptions`` the workers fit with)."""
    from core.fit.cli import check_device, read_schedule

    check_device(args.device)
    options = {"preset": args.preset}
    if args.schedule:
        options["schedule"] = read_schedule(args.schedule)
    from core.fit.options import FitOptions  # torch: after what the command line alone can show

    try:
        fit_options = FitOptions.from_dict({**options, "focal": args.focal})
    except ValueError as exc:
        raise CommandError(f"--{exc}") from None
    return options, fit_options


def _start_ray(args):
    try:
        import ray
    except ImportError:
        raise CommandError("likeness batch runs on Ray: install the cluster extra (pip install 'likeness[cluster]')") \
            from None
    if args.address:
        ray.init(address=args.address, log_to_driver=False, include_dashboard=False)
    else:
        ray.init(num_cpus=args.workers, num_gpus=args.gpus or None, object_store_memory=OBJECT_STORE_BYTES,
                 log_to_driver=False, include_dashboard=False)
    return ray


def write_summary(out: pathlib.Path, rows: list[dict]) -> dict:
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    summary = {"photos": rows, **counts}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "summary.json")
    return summary


def _run(args) -> int:
    from .people import BatchInputError, collect_people
    from .work import fit_people

    from core.fit.cli import check_out_dir

    if args.workers < 1 or args.people_per_task < 1 or args.gpus_per_task < 0 or args.threads < 0:
        raise CommandError("--workers and --people-per-task must be >= 1, --gpus-per-task and --threads >= 0")
    options, fit_options = batch_options(args)
    try:
        people = collect_people(args.photos, options)
    except BatchInputError as exc:
        raise CommandError(str(exc)) from None
    check_out_dir(args.out)
    out = pathlib.Path(args.out).resolve()
    ray = _start_ray(args)
    rows: list[dict] = []
    pending = {}
    try:
        task = ray.remote(fit_people).options(num_cpus=1, num_gpus=args.gpus_per_task, max_retries=TASK_RETRIES,
                                              retry_exceptions=False)
        for i in range(0, len(people), args.people_per_task):
            chunk = people[i:i + args.people_per_task]
            ref = task.remote(chunk, str(out), fit_options, args.device, args.threads, not args.one_at_a_time)
            pending[ref] = chunk
        print(f"batch: {len(people)} people in {len(pending)} tasks on "
              f"{int(ray.cluster_resources().get('CPU', 0))} CPUs", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk = pending.pop(ref)
                try:
                    done = ray.get(ref)
                except Exception as exc:  # the task died more often than it may be retried
                    done = [{"photo": p.photos[0], "status": "failed", "seconds": 0.0,
                             "error": f"the worker died: {type(exc).__name__}", "out": str(p.folder(out))}
                            for p in chunk]
                rows.extend(done)
                for r in done:
                    tail = f" ({r['error']})" if r["error"] else ""
                    print(f"[{len(rows)}/{len(people)}] {r['photo']}: {r['status']} in {r['seconds']} s{tail}",
                          file=sys.stderr, flush=True)
        seconds = time.perf_counter() - t0
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        summary = write_summary(out, rows)
        print(f"batch cancelled: {summary['ok']} fitted before; summary in {out / 'summary.json'}", file=sys.stderr)
        return 130
    finally:
        ray.shutdown()
    summary = write_summary(out, rows)
    fitted = summary["ok"]
    rate = f"; {60.0 * fitted / seconds:.1f} heads/min" if fitted and seconds > 0 else ""
    print(f"batch: {fitted} fitted, {summary['skipped']} skipped (done before), {summary['failed']} failed "
          f"in {seconds:.1f} s{rate}; summary in {out / 'summary.json'}")
    return 1 if summary["failed"] else 0


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="fit many people (one per photo or sub-folder) on a Ray cluster")
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_FOLDER",
                   help="photo files (one person each) or folders (a person per photo and per sub-folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per person)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="local Ray workers (default: one per CPU); ignored with --address")
    p.add_argument("--address", default="", help="join a running Ray cluster (e.g. auto or HEAD:6379)")
    p.add_argument("--people-per-task", type=int, default=1,
                   help="people one task fits, in one batched optimisation (one photo each)")
    p.add_argument("--one-at-a-time", action="store_true",
                   help="a task fits its people one after another instead of in one optimisation")
    p.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs each task asks for (fractions allowed)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs a local Ray offers (default: none)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (0: torch's default)")
    p.add_argument("--device", default="cpu", help="torch device in the workers: cpu, cuda, cuda:N")
    p.add_argument("--preset", default="default", choices=("draft", "default", "high"))
    p.add_argument("--schedule", metavar="JSON", help="schedule overrides (file or JSON text)")
    p.add_argument("--focal", default="auto", metavar="auto|estimate|MM", help="focal length, as for 'likeness fit'")
    p.set_defaults(func=_run)
