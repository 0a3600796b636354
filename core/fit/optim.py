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

It is a plain class, not a ``torch.optim.Optimizer``: constructing one of those
imports torch's compiler stack (about 1 s of a 7-8 s fit on this project's
2-core CPU, once per process). The loop needs only ``param_groups``, ``state``,
``zero_grad`` and ``step``.
"""

from __future__ import annotations

import torch


class Adam:
    """Adam (Kingma & Ba) with per-group ``uniform`` second-moment normalisation.

    params: tensors, or parameter groups (dicts with ``params`` and any of the
    defaults ``lr``, ``betas``, ``eps``, ``uniform``; other keys are kept)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, uniform: bool = False):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "uniform": uniform}
        params = list(params)
        if not params:
            raise ValueError("Adam got no parameters")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict] = []
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            if group["lr"] < 0:
                raise ValueError(f"learning rate must be >= 0, got {group['lr']}")
            self.param_groups.append(group)
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None, active: torch.Tensor | None = None):
        """One Adam step. ``active``: a 0-d tensor on the parameters' device; where it is 0 the
        parameters and moments are left as they are, without reading the device (a step switched
        off once a plateau is seen). The step count still advances: ``uncount`` takes back steps the
        caller learns were switched off."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)  # on the host: never a device read
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                if active is None:
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    m_new, v_new = m, v
                else:
                    m_new = m.mul(b1).add_(g, alpha=1 - b1)
                    v_new = v.mul(b2).addcmul_(g, g, value=1 - b2)
                scale = (v_new / (1 - b2 ** t)).sqrt()
                if group["uniform"]:
                    scale = scale.max()
                if active is None:
                    p.addcdiv_(m_new, scale + group["eps"], value=-group["lr"] / (1 - b1 ** t))
                else:
                    on = active > 0
                    p_new = p.addcdiv(m_new, scale + group["eps"], value=-group["lr"] / (1 - b1 ** t))
                    p.copy_(torch.where(on, p_new, p))
                    m.copy_(torch.where(on, m_new, m))
                    v.copy_(torch.where(on, v_new, v))
        return loss

    def uncount(self, steps: int) -> None:
        """Take back ``steps`` from every step count (steps that ``active`` switched off)."""
        for state in self.state.values():
            if "step" in state:
                state["step"] -= steps
