"""``likeness fit PHOTO... --out DIR``: fit the template to photos headless.

Shows one progress line per stage step on stderr (stage, iteration, losses,
iterations per second); Ctrl-C cancels the fit and writes nothing.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from core.cli import CommandError

PROGRESS_EVERY_S = 0.5
# Without a terminal (logs, CI) a full line every few seconds reads better than \r updates.
PROGRESS_EVERY_S_LOG = 5.0


def _run(args) -> int:
    import warnings

    from core.priors.errors import PriorError
    from core.template import load, load_default

    from .api import PhotoInput
    from .control import FitControl
    from .outputs import write_result_files
    from .pipeline import fit_views, focal_option, views_from_photos

    photos = [PhotoInput(name=pathlib.Path(p).name, path=str(p), face_index=args.face_index) for p in args.photos]
    for p in args.photos:
        if not pathlib.Path(p).is_file():
            raise CommandError(f"no such photo: {p}")
    try:
        template = load(args.template) if args.template else load_default()
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot load the template: {exc}") from exc
    options = {"preset": args.preset}
    try:
        focal = focal_option(args.focal)
    except ValueError as exc:
        raise CommandError(f"--focal: {exc}") from exc
    if args.schedule:
        try:
            options["schedule"] = json.loads(pathlib.Path(args.schedule).read_text()) \
                if pathlib.Path(args.schedule).is_file() else json.loads(args.schedule)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--schedule is neither a JSON file nor JSON text: {exc}") from exc
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            views, loaded, faces = views_from_photos(photos, focal)
        except PriorError as exc:
            raise CommandError(str(exc)) from exc
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for photo, face, view in zip(loaded, faces, views):
        exif = f", EXIF {photo.focal_35mm:g} mm" if view.focal_source == "exif" else ""
        lens = "focal estimated" if view.focal_px is None else f"focal {view.focal_px:.0f} px ({view.focal_source}{exif})"
        print(f"{photo.name}: {face.describe()}; {lens}", file=sys.stderr)
    if args.normals:
        _attach_normal_maps(views, args.normals)
    control = FitControl()
    tty = sys.stderr.isatty()
    every = PROGRESS_EVERY_S if tty else PROGRESS_EVERY_S_LOG
    last_print = 0.0
    result = None
    try:
        for rec in fit_views(template, views, options, control, args.device):
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
    paths = write_result_files(args.out, template, result, loaded, faces)
    print(f"landmark error: {result.meta['landmark_error_iod']:.4f} of the eye distance; "
          f"{result.meta['seconds']:.1f} s on {result.meta['device']}")
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0


def _attach_normal_maps(views, paths) -> None:
    from core.priors.providers import load_normal_map

    if len(paths) != len(views):
        raise CommandError(f"--normals needs one file per photo ({len(views)}), got {len(paths)}")
    for view, path in zip(views, paths):
        normals, mask = load_normal_map(path)
        view.normals, view.normal_mask = normals, mask
        view.__post_init__()


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit the head template to one or more photos")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files (JPEG, PNG, TIFF, WebP)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--preset", default="default", choices=("draft", "default", "high"))
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--template", metavar="PATH", help="a template .npz (default: the built-in head)")
    p.add_argument("--normals", nargs="+", metavar="PNG", help="a camera-space normal map per photo")
    p.add_argument("--face-index", type=int, default=None, help="which face when a photo shows several")
    p.add_argument("--schedule", metavar="JSON", help="schedule overrides (file or JSON text)")
    p.add_argument("--focal", default="auto", metavar="auto|estimate|MM",
                   help="focal length: 'auto' uses the photo's EXIF 35 mm-equivalent focal length when it has "
                        "one and estimates it otherwise; 'estimate' ignores EXIF (use it for cropped photos); "
                        "a number is the 35 mm-equivalent focal length in mm for every photo")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_run)
