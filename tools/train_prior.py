"""Train the face prior (core/priors/face_prior.py) on data from tools/prior_data.py.

    .venv/bin/python tools/train_prior.py DATA_DIR --val VAL_DIR --out core/data/face_prior.pt \
        [--steps 2400] [--batch 16] [--seed 0] [--resume RUN_DIR/last.pt] [--init WEIGHTS.pt]

Reproducible from ``--seed`` (the batches, augmentations and initial weights are drawn
from it), resumable (``RUN_DIR/last.pt`` every ``--save-every`` steps holds the weights,
the optimiser and the random state; ``--resume`` continues where it stopped), and
bounded: the step count fixes the work (about 1 s a step of 16 crops at 192² on two
CPU cores). ``--init`` starts a run from trained weights instead of random ones (a second
run that trains a committed network further, with a fresh optimiser and rate schedule; the
weights it wrote keep the first run's record under ``init``). Writes ``RUN_DIR/curves.json`` (training loss every 25 steps, validation
figures every ``--val-every`` steps) and the final weights in fp16 to ``--out``.

Losses, per pixel of the head's skin (label 1 or 2; the face mask counts twice):
- normals: a Laplace likelihood of the chord distance e between predicted and true unit
  normals with the predicted log-scale s: e·exp(-s) + s (so exp(-s) is a confidence);
- uv: L1;
- mask: binary cross-entropy of "head skin" over all pixels.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.priors.face_prior import FacePriorConfig, FacePriorNet, load_checkpoint, save_checkpoint  # noqa: E402


def load_shards(root: pathlib.Path) -> dict[str, np.ndarray]:
    paths = sorted(pathlib.Path(root).rglob("shard_*.npz"))
    if not paths:
        raise SystemExit(f"no shard_*.npz under {root}: run tools/prior_data.py first")
    parts: dict[str, list] = {}
    for p in paths:
        with np.load(p) as d:
            for k in ("image", "normals", "uv", "label"):
                parts.setdefault(k, []).append(d[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


def to_tensors(data: dict, idx: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "image": torch.as_tensor(data["image"][idx]).permute(0, 3, 1, 2).float() / 255.0,
        "normals": torch.as_tensor(data["normals"][idx]).permute(0, 3, 1, 2).float() / 127.0,
        "uv": torch.as_tensor(data["uv"][idx].astype(np.float32)).permute(0, 3, 1, 2) / 65535.0,
        "label": torch.as_tensor(data["label"][idx]).long(),
    }


def augment(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Photometric jitter on (B, 3, S, S) sRGB: gain per channel, contrast, gamma, some grey."""
    B = image.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(B, *shape, generator=gen)

    x = image * u(0.8, 1.2, 3, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.75, 1.25, 1, 1, 1) + mean
    x = x.clamp(1e-4, 1) ** u(0.8, 1.25, 1, 1, 1)
    grey = (torch.rand(B, 1, 1, 1, generator=gen) < 0.1).float()
    x = x * (1 - grey) + x.mean(1, keepdim=True) * grey
    return x.clamp(0, 1)


def losses(out: dict, batch: dict) -> dict[str, torch.Tensor]:
    label = batch["label"]
    skin = ((label == 1) | (label == 2)).float()
    weight = skin + (label == 2).float()
    e = (out["normals"] - batch["normals"]).norm(dim=1)
    s = out["log_scale"][:, 0]
    n = weight.sum().clamp(min=1)
    normal_nll = ((e * torch.exp(-s) + s) * weight).sum() / n
    normal_l = (e * weight).sum() / n
    uv = ((out["uv"] - batch["uv"]).abs().sum(1) * weight).sum() / n
    mask = F.binary_cross_entropy_with_logits(out["mask_logit"][:, 0], skin)
    total = normal_nll + 2.0 * uv + 0.5 * mask
    return {"total": total, "normal_nll": normal_nll, "normal_chord": normal_l, "uv_l1": uv, "mask_bce": mask}


def evaluate(net: FacePriorNet, data: dict, batch: int = 32) -> dict[str, float]:
    """Validation figures on the face mask (label 2): normal angle error (degrees) median and
    p90, UV error in crop pixels median and p90, and the skin mask's IoU."""
    net.eval()
    angles, uv_px, inter, union = [], [], 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(data["image"]), batch):
            b = to_tensors(data, np.arange(i, min(i + batch, len(data["image"]))))
            out = net(b["image"])
            face = b["label"] == 2
            cos = (out["normals"] * b["normals"]).sum(1).clamp(-1, 1)
            angles.append(torch.rad2deg(torch.acos(cos))[face])
            # UV error in pixels: the UV step per pixel from the true map's finite differences.
            t = b["uv"]
            gx = (t[..., :, 1:] - t[..., :, :-1]).norm(dim=1)[..., :-1, :]
            gy = (t[..., 1:, :] - t[..., :-1, :]).norm(dim=1)[..., :, :-1]
            step = (0.5 * (gx + gy)).clamp(min=1e-6)
            err = (out["uv"] - t).norm(dim=1)[..., :-1, :-1] / step
            inner = face[..., :-1, :-1] & face[..., 1:, 1:] & face[..., :-1, 1:] & face[..., 1:, :-1]
            uv_px.append(err[inner])
            pred = torch.sigmoid(out["mask_logit"][:, 0]) > 0.5
            skin = (b["label"] == 1) | (b["label"] == 2)
            inter += float((pred & skin).sum())
            union += float((pred | skin).sum())
    net.train()
    a = torch.cat(angles).numpy()
    u = torch.cat(uv_px).numpy()
    return {"normal_deg_median": float(np.median(a)), "normal_deg_mean": float(a.mean()),
            "normal_deg_p90": float(np.percentile(a, 90)), "uv_px_median": float(np.median(u)),
            "uv_px_p90": float(np.percentile(u, 90)), "mask_iou": inter / max(union, 1.0)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=pathlib.Path)
    p.add_argument("--val", type=pathlib.Path, required=True)
    p.add_argument("--out", type=pathlib.Path, required=True, help="final fp16 weights")
    p.add_argument("--run", type=pathlib.Path, default=None, help="run folder (default: OUT's name + '_run')")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--val-every", type=int, default=400)
    p.add_argument("--resume", type=pathlib.Path, default=None)
    p.add_argument("--init", type=pathlib.Path, default=None,
                   help="start from these trained weights (a checkpoint from --out) instead of random ones")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop (resumably) after this step, keeping the schedule of --steps")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = args.run or args.out.parent / (args.out.stem + "_run")
    run.mkdir(parents=True, exist_ok=True)
    data = load_shards(args.data)
    val = load_shards(args.val)
    size = data["image"].shape[1]
    print(f"{len(data['image'])} training crops, {len(val['image'])} validation crops, {size}²", flush=True)
    torch.manual_seed(args.seed)
    net = FacePriorNet(FacePriorConfig(size=size))
    init_record = None
    if args.init:
        trained, init_record = load_checkpoint(args.init)
        if trained.config.size != size:
            raise SystemExit(f"{args.init} was trained on {trained.config.size}² crops, the data is {size}²")
        net = trained.train()
        print(f"starting from {args.init} ({init_record.get('steps', '?')} steps)", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    curves = {"train": [], "val": [], "config": vars(args) | {"data": str(args.data), "val": str(args.val),
                                                              "out": str(args.out), "run": str(run),
                                                              "resume": str(args.resume), "init": str(args.init)}}
    step = 0
    seconds = 0.0
    if args.resume:
        state = torch.load(args.resume, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        rng.bit_generator.state = state["rng"]
        step, seconds, curves["train"], curves["val"] = state["step"], state["seconds"], state["train"], state["val"]
        print(f"resumed at step {step}", flush=True)
    if args.init and step == 0:  # where the trained weights start, on this run's validation people
        curves["val"].append({"step": 0, **{k: round(v, 4) for k, v in evaluate(net, val).items()}})
        print("  validation:", json.dumps(curves["val"][-1]), flush=True)
    net.train()
    t_last = time.perf_counter()
    running: dict[str, float] = {}
    while step < args.steps:
        if args.stop_after is not None and step >= args.stop_after:
            print(f"stopped at step {step}; continue with --resume {run / 'last.pt'}", flush=True)
            return 0
        idx = np.sort(rng.choice(len(data["image"]), size=args.batch, replace=False))
        batch = to_tensors(data, idx)
        batch["image"] = augment(batch["image"], gen)
        out = net(batch["image"])
        terms = losses(out, batch)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if step % 25 == 0:
            now = time.perf_counter()
            seconds += now - t_last
            t_last = now
            row = {"step": step, "seconds": round(seconds, 1), "lr": sched.get_last_lr()[0]}
            row.update({k: round(v / 25, 5) for k, v in running.items()})
            running = {}
            curves["train"].append(row)
            eta = seconds / step * (args.steps - step)
            print(f"step {step}/{args.steps}  loss {row['total']:.4f}  normal {row['normal_chord']:.4f}  "
                  f"uv {row['uv_l1']:.4f}  mask {row['mask_bce']:.4f}  {seconds / 60:.1f} min, ETA {eta / 60:.1f} min",
                  flush=True)
        if step % args.val_every == 0 or step == args.steps:
            figures = evaluate(net, val)
            curves["val"].append({"step": step, **{k: round(v, 4) for k, v in figures.items()}})
            print("  validation:", json.dumps(curves["val"][-1]), flush=True)
        if step % args.save_every == 0 or step == args.steps:
            tmp = run / "last.pt.tmp"
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "gen": gen.get_state(), "rng": rng.bit_generator.state, "step": step, "seconds": seconds,
                        "train": curves["train"], "val": curves["val"]}, tmp)
            tmp.replace(run / "last.pt")
            (run / "curves.json").write_text(json.dumps(curves, indent=1))
    final = curves["val"][-1] if curves["val"] else {}
    recipe = {}
    for r in sorted(pathlib.Path(args.data).rglob("recipe.json")):
        recipe[str(r.parent.name)] = json.loads(r.read_text())
    save_checkpoint(args.out, net.eval(), extra={"steps": step, "seconds": round(seconds, 1), "seed": args.seed,
                                                 "batch": args.batch, "train_crops": int(len(data["image"])),
                                                 "validation": final, "data": recipe,
                                                 **({"init": {k: v for k, v in init_record.items() if k != "data"}}
                                                    if init_record is not None else {})})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
