"""``likeness fit PHOTO... --out DIR``: fit the template to photos headless.

Shows one progress line per stage step on stderr (stage, iteration, losses,
iterations per second); Ctrl-C cancels the fit and writes nothing. Every
argument is checked before the photos are read, so a mistake costs no fit;
results appear in ``--out`` together or not at all (``core/fit/outputs.py``).
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import time

from core.cli import CommandError

PROGRESS_EVERY_S = 0.5
# Without a terminal (logs, CI) a full line every few seconds reads better than \r updates.
PROGRESS_EVERY_S_LOG = 5.0


# FitOptions' errors start with the option's name; the command line names its flag instead.
OPTION_FLAGS = {"preset": "--preset", "schedule": "--schedule", "focal": "--focal", "cues": "--normals"}


def job_from_args(args):
    """The ``FitJob`` the arguments ask for, checked before any photo is read (CommandError).
    What the command line alone can show wrong is checked before torch loads (seconds), so a
    typo is answered at once."""
    for p in args.photos:
        if not pathlib.Path(p).is_file():
            raise CommandError(f"no such photo: {p}")
    check_out_dir(args.out, create=False)
    schedule = read_schedule(args.schedule) if args.schedule else None
    device = check_device(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from core.template import load, load_default

    from .api import FitJob, PhotoInput
    from .options import FitOptions

    cues = cue_options(args)
    check_out_dir(args.out)
    photos = [PhotoInput(name=pathlib.Path(p).name, path=str(p), face_index=args.face_index) for p in args.photos]
    try:
        job = FitJob(photos, options=FitOptions(preset=args.preset, schedule=schedule, focal=args.focal, cues=cues,
                                                holdout_landmarks=args.holdout_landmarks),
                     device=device)
    except ValueError as exc:
        name, _, rest = str(exc).partition(" ")
        flag = OPTION_FLAGS.get(name.rstrip(":"))
        raise CommandError(f"{flag}: {rest}" if flag else str(exc)) from None
    try:
        job.template = load(args.template) if args.template else load_default()
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot load the template: {exc}") from None
    return job


def cue_options(args):
    """The dense-cue source the flags ask for: ``--normals`` files, the face prior (the default), or
    None (``--cues none``)."""
    from .options import DEFAULT_CUES, CueOptions

    if args.normals and args.cues not in (None, "none", "files"):
        raise CommandError(f"--normals: give normal maps or --cues {args.cues}, not both")
    if args.prior_weights and args.cues == "none":
        raise CommandError("--prior-weights: it names face prior weights, and --cues none turns the prior off")
    if args.normals:
        return CueOptions(normal_maps=tuple(args.normals))
    if args.cues == "none":
        return None
    if args.cues in ("face_prior", "outline") or args.prior_weights:
        if args.prior_weights:
            from core.priors.errors import CheckpointError
            from core.priors.face_prior import load_checkpoint

            try:
                load_checkpoint(args.prior_weights)
            except CheckpointError as exc:
                raise CommandError(f"--prior-weights: {exc}") from None
        return CueOptions(provider="face_prior", weights=args.prior_weights,
                          maps=("head",) if args.cues == "outline" else ())
    return DEFAULT_CUES


def _run(args) -> int:
    import warnings

    if args.threads < 0:
        raise CommandError(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    job = job_from_args(args)

    from core.priors.errors import CueError, PriorError

    from .control import FitControl
    from .outputs import write_result_files
    from .pipeline import run_fit, views_from_photos
    from .result_set import ResultSetError

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            inputs = views_from_photos(job.photos, job.options)
        except CueError as exc:
            raise CommandError(f"{'--normals' if args.normals else '--cues'}: {exc}") from None
        except PriorError as exc:
            raise CommandError(str(exc)) from exc
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for photo, face, view in zip(inputs.photos, inputs.faces, inputs.views):
        exif = f", EXIF {photo.focal_35mm:g} mm" if view.focal_source == "exif" else ""
        lens = "focal estimated" if view.focal_px is None else f"focal {view.focal_px:.0f} px ({view.focal_source}{exif})"
        cues = f"; {view.cue_source}" if view.cue_source else ""
        print(f"{photo.name}: {face.describe()}; {lens}{cues}", file=sys.stderr)
    control = FitControl()
    tty = sys.stderr.isatty()
    every = PROGRESS_EVERY_S if tty else PROGRESS_EVERY_S_LOG
    last_print = 0.0
    result = None
    try:
        for rec in run_fit(job, control, inputs):
            now = time.perf_counter()
            if rec.result is not None:
                result = rec.result
            elif not args.quiet and (now - last_print > every):
                last_print = now
                pct = 100.0 * rec.step / max(rec.total_steps, 1)
                terms = " ".join(f"{k}={v:.4g}" for k, v in rec.losses.items() if k in ("total", "landmark", "normal"))
                line = f"[{pct:5.1f}%] {rec.stage:<6} it {rec.iteration:4d}  {terms}"
                print(f"\r{line}   " if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        control.cancel()
        print("\nfit cancelled; nothing was written", file=sys.stderr)
        return 130
    except (ValueError, FloatingPointError) as exc:
        raise CommandError(str(exc)) from exc
    if not args.quiet and tty:
        print(file=sys.stderr)
    result.meta["seconds"] = round(time.perf_counter() - t0, 3)
    try:
        paths = write_result_files(args.out, job.template, result, inputs.photos, inputs.faces)  # all or nothing
    except ResultSetError as exc:
        raise CommandError(str(exc)) from None
    print(f"landmark error: {result.meta['landmark_error_iod']:.4f} of the eye distance; "
          f"{result.meta['seconds']:.1f} s on {result.meta['device']}")
    held = result.meta.get("heldout_landmark_error_iod")
    if held:
        print(f"held-out landmarks (not fitted): points {held['points']:.4f}, face oval {held['oval']:.4f} "
              f"of the eye distance")
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0


def check_out_dir(out: str, create: bool = True) -> None:
    """``--out`` must be a folder (or creatable as one) before any fitting starts; ``create``
    makes it."""
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise CommandError(f"--out {out} is a file; give a folder")
    if not create:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out {out}: cannot create the folder ({exc.strerror})") from None


def check_device(device: str) -> str:
    """A torch device this build can use, else CommandError. The name is checked before torch
    loads; whether CUDA is there needs torch."""
    if not re.fullmatch(r"(cpu|cuda)(:[0-9]+)?", device):
        raise CommandError(f"--device {device!r}: use cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CommandError(f"--device {device}: this torch build has no usable CUDA; use --device cpu")
    return device


def read_schedule(text: str) -> dict:
    """``--schedule``: a JSON file's name or JSON text, checked against the schedule's shape."""
    from .schedule import check_overrides

    try:
        is_file = pathlib.Path(text).is_file()
    except (OSError, ValueError):  # too long or NUL: not a file name
        is_file = False
    try:
        raw = pathlib.Path(text).read_text() if is_file else text
        value = json.loads(raw)
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--schedule: cannot read {text}: {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CommandError(f"--schedule is neither a JSON file nor JSON text: {str(exc)[:200]}") from None
    try:
        return check_overrides(value)
    except ValueError as exc:
        raise CommandError(f"--schedule: {exc}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit the head template to one or more photos")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files (JPEG, PNG, TIFF, WebP)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--preset", default="default", choices=("draft", "default", "high"))
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--template", metavar="PATH", help="a template .npz (default: the built-in head)")
    p.add_argument("--normals", nargs="+", metavar="PNG", help="a camera-space normal map per photo")
    p.add_argument("--cues", default=None, choices=("none", "face_prior", "outline"),
                   help="dense cues from the photo's pixels: 'face_prior' (the default) runs our face prior "
                        "network (normals per pixel) on each photo; 'outline' keeps only its head outline "
                        "(an ablation); 'none' fits landmarks and pixels alone")
    p.add_argument("--prior-weights", metavar="PT", help="face prior weights (default: the shipped ones)")
    p.add_argument("--face-index", type=int, default=None, help="which face when a photo shows several")
    p.add_argument("--schedule", metavar="JSON", help="schedule overrides (file or JSON text)")
    p.add_argument("--focal", default="auto", metavar="auto|estimate|MM",
                   help="focal length: 'auto' uses the photo's EXIF 35 mm-equivalent focal length when it has "
                        "one and estimates it otherwise; 'estimate' ignores EXIF (use it for cropped photos); "
                        "a number is the 35 mm-equivalent focal length in mm for every photo")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the fit (default 0: torch's choice, one per core); 1 suits a busy machine")
    p.add_argument("--holdout-landmarks", action="store_true",
                   help="check mode: leave every 10th FaceMesh point and the face oval out of the fit and "
                        "report how far the result lands from them")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_run)
