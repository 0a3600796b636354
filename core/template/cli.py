"""``likeness template build|preview`` (``import`` is added by ``core.adopt.cli``)."""

from __future__ import annotations

import pathlib


def _build(args) -> int:
    from core.cli import CommandError

    from .build import build_default, default_cache_path, load_default

    try:
        if args.out:
            template = build_default()
            template.save(args.out)
            where = pathlib.Path(args.out)
        else:
            template = load_default()
            where = default_cache_path()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    print(template.summary())
    print(f"wrote {where}")
    return 0


def _preview(args) -> int:
    from core.cli import CommandError

    from .build import load_default
    from .model import TemplateError, load
    from .preview import draw_preview

    try:
        template = load(args.template) if args.template else load_default()
    except (TemplateError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    draw_preview(template, args.out)
    print(f"wrote {args.out}")
    return 0


def add_parser(sub):
    """Register ``template build|preview``; returns the action subparsers (``core.adopt.cli`` adds ``import``)."""
    p = sub.add_parser("template", help="build, draw or import a rigged head template")
    names = p.add_subparsers(dest="action", metavar="ACTION")
    names.required = True
    b = names.add_parser("build", help="build the default template (deterministic; cached)")
    b.add_argument("--out", metavar="PATH", help="write the .npz here instead of the cache")
    b.set_defaults(func=_build)
    v = names.add_parser("preview", help="draw front/side views, joints, landmarks and controller sweeps")
    v.add_argument("--out", metavar="PNG", required=True)
    v.add_argument("--template", metavar="NPZ", help="a template file (default: the default template)")
    v.set_defaults(func=_preview)
    return names
