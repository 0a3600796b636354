"""``likeness template import FILE --out T.npz``: any artist's head as a template, headless."""

from __future__ import annotations

import json
import os
import pathlib
import time


def _import(args) -> int:
    from core.cli import CommandError
    from core.files import UnsafeFileError

    from . import HeadImportError, RegistrationError, import_head, read_head
    from .picture import draw_import

    out = pathlib.Path(args.out)
    if out.suffix != ".npz":
        raise CommandError(f"--out must name a .npz file, got {str(out)!r}")
    if not out.parent.is_dir():
        raise CommandError(f"the folder {str(out.parent)!r} does not exist; create it first")
    start = time.perf_counter()
    try:
        # The file is read (and refused, if it must be) before the long part is announced.
        head = read_head(args.file, args.object, args.scale)
        print(f"importing {args.file}: finding the face on renders, registering the default head ...", flush=True)
        template, confidence, reg = import_head(head)
    except (HeadImportError, RegistrationError, UnsafeFileError) as exc:
        raise CommandError(str(exc)) from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        template.save(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(template.summary())
    for line in describe(confidence):
        print(line)
    print(f"wrote {out} ({time.perf_counter() - start:.1f} s)")
    if args.picture:
        draw_import(template, reg, args.picture)
        print(f"wrote {args.picture}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(confidence, indent=1))
        print(f"wrote {args.json}")
    return 0


def describe(conf: dict) -> list[str]:
    """Confidence lines a TD reads: what matched and how well."""
    weak = [name for name, v in conf["regions"].items() if v < 0.9]
    return [
        f"surface      {100 * conf['surface_matched']:.0f} % of the vertices within 2 mm of the registered "
        f"default head (median {conf['surface_median_mm']:.2f} mm, p95 {conf['surface_p95_mm']:.2f} mm)",
        f"landmarks    transferred vs found on the renders: median {conf['landmarks_vs_detector_median_mm']:.2f} mm, "
        f"p90 {conf['landmarks_vs_detector_p90_mm']:.2f} mm",
        f"regions      {len(conf['regions']) - len(weak)} of {len(conf['regions'])} matched"
        + (f"; check {', '.join(weak)}" if weak else ""),
        f"mirror       {100 * conf['mirror_paired']:.0f} % of the vertices have a mirror partner",
        "shape keys   " + (", ".join(conf["shape_keys_from_artist"]) or "none in the file")
        + " (become controllers)",
    ]


def add_parser(sub) -> None:
    from core.template.cli import add_parser as template_actions

    names = template_actions(sub)
    p = names.add_parser("import", help="make a template of any head mesh (.obj, .glb, .gltf; .blend, .fbx with bpy)")
    p.add_argument("file", metavar="FILE", help="the head mesh: .obj or .glb/.gltf (Y up, as exported), .blend or .fbx")
    p.add_argument("--out", metavar="NPZ", required=True, help="the template file to write")
    p.add_argument("--object", metavar="NAME", help="the object (OBJ group, glTF mesh, Blender object) to use")
    p.add_argument("--scale", type=float, default=1.0, help="file units to metres (0.01 for centimetres)")
    p.add_argument("--picture", metavar="PNG", help="draw the head, its landmarks and regions")
    p.add_argument("--json", metavar="PATH", help="write the confidence per transferred item")
    p.set_defaults(func=_import)
