"""Adam with an optional uniform step per tensor (for large-steps offsets).

Plain Adam divides each coordinate's step by that coordinate's own gradient
scale, so a vertex with a tiny but steady gradient (one the data barely sees:
occluded, off the photo, at grazing angles) moves as fast as a vertex the
data pins down, and the unseen parts of the head drift. Nicolet et al. 2021
(large steps, §5) pair their parameterisation with a variant that divides by
the *largest* second-moment estimate of the whole tensor instead: steps stay
proportional to the (smoothed) gradient, and the preconditioner (I + λL)⁻¹
keeps them smooth. ``Adam`` here does that for parameter groups with
``uniform=True`` and is plain Adam for the others.
"""

from __future__ import annotations

import torch


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba) with per-group ``uniform`` second-moment normalisation."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, uniform: bool = False):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "uniform": uniform})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                scale = (v / (1 - b2 ** t)).sqrt()
                if group["uniform"]:
                    scale = scale.max()
                p.addcdiv_(m, scale + group["eps"], value=-group["lr"] / (1 - b1 ** t))
        return loss
