"""Fit every photo in a folder and write a Blender scene and a GLB per photo.

For each photo ``<stem>.<ext>`` in ``--photos``, writes to ``--out``:
``<stem>.blend`` (head mesh with UVs, its armature with the re-fitted joints,
skin weights and the 52 ARKit expression shape keys at 0, eyes/teeth/tongue)
and an export per ``--formats`` (default GLB: ``<stem>.glb``; FBX adds
``<stem>.fbx`` + ``<stem>_textures/``; OBJ ``<stem>.obj``); then
``summary.json`` (``{"photos": [{"photo", "status", "seconds", "error", "out",
"blend", "glb", "exports", "landmark_error_iod"}], "ok", "failed", "skipped"}``,
the keys ``likeness batch`` writes, plus Blender's files).
Relative paths are taken from the current folder. Progress goes to stdout.
Exits 1 with a summary when any photo failed, 2 on bad arguments.

Where the core runs:
- in-process (default): ``core.fit`` in this interpreter. The repository's
  venv has both ``bpy`` and torch::

      .venv/bin/python scripts/batch_fit.py --photos DIR --out DIR [--preset draft]

- in a core process started with ``--core-python`` (Blender's own Python has
  no torch)::

      blender -b -P scripts/batch_fit.py -- --photos DIR --out DIR --core-python <repo>/.venv/bin/python

The Blender data is built by the add-on's own code (``addon/result.py``), so
a batch result is exactly what "Create Result" makes in Blender.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

import bpy

REPO = pathlib.Path(__file__).resolve().parents[1]
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
EXTENSION_PACKAGE = "likeness_extension"


def load_extension():
    """Import the repository root as the extension package (add-on + bridge), without registering it."""
    spec = importlib.util.spec_from_file_location(EXTENSION_PACKAGE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[EXTENSION_PACKAGE] = package
    spec.loader.exec_module(package)
    from likeness_extension.addon import result  # noqa: F401  (registers the submodules)
    from likeness_extension.bridge import protocol

    return sys.modules[f"{EXTENSION_PACKAGE}.addon.result"], protocol


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="batch_fit.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", required=True, type=pathlib.Path, help="folder of photos (one person each)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder (created)")
    p.add_argument("--preset", default="default", choices=("draft", "default", "high"))
    p.add_argument("--iterations", default="", metavar="STAGE=N,...",
                   help="per-stage iteration overrides, e.g. rig=50,joint=20,vertex=0")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--formats", default="GLB", metavar="GLB,FBX,OBJ",
                   help="exports written beside each .blend (comma-separated; default GLB)")
    p.add_argument("--core-python", default="", metavar="PYTHON",
                   help="run the fits in a core process started with this interpreter instead of in-process")
    return p.parse_args(argv)


def job_options(args) -> dict:
    options = {"preset": args.preset}
    stages = {}
    for item in filter(None, args.iterations.split(",")):
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise SystemExit(f"batch_fit.py: error: --iterations wants STAGE=N, got {item!r}")
        stages[name.strip()] = {"iterations": int(value)}
    if stages:
        options["schedule"] = {"stages": stages}
    return options


class InProcessCore:
    """Fits with ``core.fit`` in this interpreter."""

    def __init__(self, device: str):
        from core.template import load_default

        self.device = device
        self.template = load_default().to_arrays()

    def fit(self, photo: pathlib.Path, options: dict, progress) -> tuple[dict, dict]:
        from core.fit.api import FitJob, PhotoInput
        from core.fit.options import FitOptions
        from core.fit.pipeline import run_fit

        record = None
        job = FitJob([PhotoInput(photo.name, path=str(photo))], options=FitOptions.from_dict(options), device=self.device)
        for record in run_fit(job):
            progress(record.stage, record.step, record.total_steps)
        if record is None or record.result is None:
            raise RuntimeError("the fit ended without a result")
        return record.result.wire_arrays(), record.result.meta

    def close(self) -> None:
        pass


class ProcessCore:
    """Fits in a core process started through the add-on's own core link."""

    def __init__(self, python: str, device: str):
        from likeness_extension.addon import core_process

        self.link = core_process.CoreLink(python=python, max_restarts=0)
        self.link.start()
        if self.link.wait() != core_process.CONNECTED:
            raise SystemExit(f"batch_fit.py: cannot start the core: {self.link.error}")
        self.device = device
        wire = self.link.client.get_template("default")
        self.template = (wire.arrays, wire.meta)

    def fit(self, photo: pathlib.Path, options: dict, progress) -> tuple[dict, dict]:
        from likeness_extension.bridge import schema
        from likeness_extension.bridge.client import BridgeError

        client = self.link.client
        job = client.start_fit([str(photo)], options=options, device=self.device)
        while True:
            try:
                msg = client.wait_final(job, timeout=0.5)
                break
            except TimeoutError:
                p = client.latest_progress(job)
                if p is not None:
                    progress(p.fields["stage"], p.fields["step"], p.fields["total"])
        if msg.kind != schema.RESULT:
            raise RuntimeError(str(BridgeError(msg)) if msg.kind == schema.ERROR else f"the core answered {msg.kind}")
        return dict(msg.buffers), msg.fields.get("meta", {})

    def close(self) -> None:
        self.link.stop()


EXPORT_FORMATS = ("GLB", "FBX", "OBJ")


def write_outputs(result_mod, protocol, template, arrays: dict, meta: dict, out: pathlib.Path, name: str,
                  formats: list[str]) -> dict[str, str]:
    """``<name>.blend`` and one export per format in ``out``; returns {format: file name}."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    msg = protocol.Message("result", job=name, fields={"meta": meta}, buffers=arrays)
    coll = result_mod.create_result(msg, template, name=name)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / f"{name}.blend"), check_existing=False)
    return {fmt: pathlib.Path(result_mod.export_result(coll, str(out / name), fmt)).name for fmt in formats}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # A core process runs in another working directory: it must get absolute paths.
    args.photos, args.out = args.photos.resolve(), args.out.resolve()
    if not args.photos.is_dir():
        print(f"batch_fit.py: error: --photos {args.photos} is not a folder", file=sys.stderr)
        return 2
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)
    if not photos:
        print(f"batch_fit.py: error: no photos ({', '.join(PHOTO_EXTENSIONS)}) in {args.photos}", file=sys.stderr)
        return 2
    formats = [f.strip().upper() for f in args.formats.split(",") if f.strip()]
    if not formats or set(formats) - set(EXPORT_FORMATS):
        print(f"batch_fit.py: error: --formats takes a comma-separated list of {', '.join(EXPORT_FORMATS)}, "
              f"got {args.formats!r}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    options = job_options(args)
    result_mod, protocol = load_extension()
    core = ProcessCore(args.core_python, args.device) if args.core_python else InProcessCore(args.device)
    rows = []
    try:
        for i, photo in enumerate(photos, 1):
            print(f"[{i}/{len(photos)}] {photo.name}: fitting", flush=True)
            t0 = time.perf_counter()
            last = [0.0]

            def progress(stage, step, total):
                if time.perf_counter() - last[0] > 1.0:
                    last[0] = time.perf_counter()
                    print(f"[{i}/{len(photos)}] {photo.name}: {stage} {step}/{total}", flush=True)

            row = {"photo": photo.name, "status": "failed", "seconds": 0.0, "error": "", "out": "", "blend": "",
                   "glb": "", "exports": {}}
            try:
                arrays, meta = core.fit(photo, options, progress)
                exports = write_outputs(result_mod, protocol, core.template, arrays, meta, args.out, photo.stem,
                                        formats)
                row.update(status="ok", out=str(args.out / f"{photo.stem}.blend"), blend=f"{photo.stem}.blend",
                           glb=exports.get("GLB", ""), exports=exports,
                           landmark_error_iod=meta.get("landmark_error_iod"))
            except Exception as exc:  # one bad photo must not stop the batch; it is reported below
                row["error"] = f"{type(exc).__name__}: {exc}"
            row["seconds"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            print(f"[{i}/{len(photos)}] {photo.name}: {row['status']} in {row['seconds']} s"
                  + (f" ({row['error']})" if row["error"] else ""), flush=True)
    finally:
        core.close()
    failed = [r for r in rows if r["status"] != "ok"]
    summary = {"photos": rows, "ok": len(rows) - len(failed), "failed": len(failed), "skipped": 0, "options": options}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done: {summary['ok']} fitted, {len(failed)} failed; summary in {args.out / 'summary.json'}")
    for r in failed:
        print(f"  FAILED {r['photo']}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    # under `blender -b -P batch_fit.py -- ARGS`, the script's arguments follow "--"
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(argv))
