"""Widen a trained face prior without changing what it computes, to train on from there.

    python tools/widen_prior.py core/data/face_prior.pt wide.pt --widths 32,48,96,160,256

Every level keeps its trained channels; the channels added to a level start with random
incoming weights (Kaiming, from ``--seed``) and zero outgoing weights, and their batch
norms start as the identity with unit running variance. So the widened network's maps are
the trained network's, exactly (up to fp16 storage; checked before writing), and training
(``tools/train_prior.py --init wide.pt``) grows the new channels from there.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from core.priors.face_prior import FacePriorConfig, FacePriorNet, load_checkpoint, save_checkpoint  # noqa: E402


def _conv_maps(old: FacePriorConfig, new: FacePriorConfig) -> dict[str, tuple[list[int], list[int]]]:
    """For each convolution's weight name: (new indices of its old output channels, of its old input
    channels). Old channels keep their place at the front of their level's new channels; the up
    blocks' inputs are [upsampled deeper level, skip], each block at its own offset."""
    w, v = old.widths, new.widths
    same = lambda n: list(range(n))  # noqa: E731
    maps = {"stem.0.weight": (same(w[0]), same(3)),
            "stem.3.0.weight": (same(w[0]), same(w[0])), "stem.3.3.weight": (same(w[0]), same(w[0]))}
    for i in range(len(w) - 1):
        maps[f"down.{i}.0.weight"] = (same(w[i + 1]), same(w[i]))
        maps[f"down.{i}.3.0.weight"] = (same(w[i + 1]), same(w[i + 1]))
        maps[f"down.{i}.3.3.weight"] = (same(w[i + 1]), same(w[i + 1]))
    for k, i in enumerate(reversed(range(len(w) - 1))):
        cat = same(w[i + 1]) + [v[i + 1] + j for j in range(w[i])]
        maps[f"up.{k}.0.weight"] = (same(w[i]), cat)
        maps[f"up.{k}.3.weight"] = (same(w[i]), same(w[i]))
    maps["head.weight"] = (same(7), same(w[0]))
    return maps


def widen(net: FacePriorNet, widths: tuple[int, ...], seed: int = 0) -> FacePriorNet:
    old = net.config
    if len(widths) != len(old.widths) or any(b < a for a, b in zip(old.widths, widths)):
        raise SystemExit(f"--widths must have {len(old.widths)} levels, each at least {old.widths}")
    torch.manual_seed(seed)
    wide = FacePriorNet(FacePriorConfig(size=old.size, widths=tuple(widths)))
    state, trained = wide.state_dict(), net.state_dict()
    convs = _conv_maps(old, wide.config)
    for name, (outs, ins) in convs.items():
        weight = state[name].clone()
        out_idx, in_idx = torch.tensor(outs), torch.tensor(ins)
        new_in = torch.ones(weight.shape[1], dtype=torch.bool)
        new_in[in_idx] = False
        weight[out_idx[:, None], new_in.nonzero()[:, 0][None]] = 0.0  # old outputs ignore new inputs
        weight[out_idx[:, None], in_idx[None]] = trained[name]
        state[name] = weight
    for name, value in trained.items():
        if name in convs:
            continue
        if value.dim() == 1 and name != "head.bias":  # batch norms: old channels copied, new ones the identity
            state[name][: len(value)] = value
        else:  # the head's bias, the input normalisation, the batch norms' step counts
            state[name] = value.clone()
    wide.load_state_dict(state)
    return wide.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=pathlib.Path)
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--widths", required=True, help="comma-separated widths per level")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    net, extra = load_checkpoint(args.weights)
    wide = widen(net, tuple(int(x) for x in args.widths.split(",")), args.seed)
    x = torch.rand(2, 3, net.config.size, net.config.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = net(x), wide(x)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    if worst > 1e-4:
        raise SystemExit(f"the widened network computes other maps (max difference {worst:.2e})")
    params = sum(t.numel() for t in wide.parameters())
    save_checkpoint(args.out, wide, extra={**extra, "widened_from": str(args.weights)})
    print(f"{args.out}: widths {wide.config.widths}, {params / 1e6:.2f} M parameters, "
          f"same maps as {args.weights.name} (max difference {worst:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
