"""``likeness doctor``: what this interpreter can run (devices, optional parts)."""

from __future__ import annotations

import importlib.util
import json
import platform


def report() -> dict:
    """Return a dict describing torch, devices and optional packages."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": bool(torch.cuda.is_available()),
        "devices": ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())],
        "threads": torch.get_num_threads(),
    }
    for mod in ("mediapipe", "bpy", "pytorch3d", "pycolmap", "cholespy"):
        info[mod] = importlib.util.find_spec(mod) is not None
    info["face_prior"] = _face_prior()
    return info


def _face_prior() -> str:
    """The shipped face prior weights: "ok (N steps)" when they load, else why not."""
    from core.priors.errors import CheckpointError
    from core.priors.face_prior import DEFAULT_WEIGHTS, load_checkpoint

    try:
        _, extra = load_checkpoint(DEFAULT_WEIGHTS)
    except CheckpointError as exc:
        return f"missing: {exc}"
    return f"ok ({extra.get('steps', '?')} steps)"


def _run(args) -> int:
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>10}: {value}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="show devices and which optional parts are installed")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run)
