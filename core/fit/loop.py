"""The optimisation loop: stages from a schedule, one record per iteration.

For each stage: an Adam optimiser over that stage's variables (one parameter
group per variable, learning rates from the schedule), bounded controllers
projected back after each step, pins and pause/cancel read from the
``FitControl`` between iterations. While pins act, the head's placement
(pose, cameras, focal lengths, neck chain) is held, so a pin sculpts the
head rather than sliding it with the camera in tow. A non-finite or diverging loss rolls back
to the last good state and halves the step; a plateau ends the stage early.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from .control import FitControl
from .large_steps import LargeSteps
from .optim import Adam
from .objective import Objective
from .schedule import StageSpec
from .variables import FitVariables

# A loss this many times the best seen in the stage counts as divergence.
DIVERGENCE_FACTOR = 50.0
MAX_ROLLBACKS = 20


@dataclass
class StageReport:
    name: str
    iterations: int = 0
    seconds: float = 0.0
    losses: dict = field(default_factory=dict)
    rollbacks: int = 0
    stopped_early: bool = False


@dataclass
class LoopRecord:
    stage: str
    iteration: int
    step: int
    total_steps: int
    losses: dict
    verts: np.ndarray  # (N, 3) float32
    camera: dict  # the first view's camera, see FitRecord.camera


def _roll_back(spec: StageSpec, report: StageReport, variables: FitVariables, opt, good, what: str) -> None:
    """Restore the last good variables and optimiser state and halve the steps;
    give up after ``MAX_ROLLBACKS`` in one stage."""
    report.rollbacks += 1
    if report.rollbacks > MAX_ROLLBACKS:
        raise FloatingPointError(
            f"stage {spec.name!r}: {what} after {MAX_ROLLBACKS} rollbacks; "
            "check the inputs (landmarks, normal maps) or lower the learning rates"
        )
    variables.restore(good[0])
    opt.load_state_dict(good[1])
    for g in opt.param_groups:
        g["lr"] *= 0.5


def run_stages(variables: FitVariables, objective: Objective, stages: list[StageSpec],
               control: FitControl | None = None, reports: list[StageReport] | None = None
               ) -> Iterator[LoopRecord]:
    """Optimise ``variables`` stage by stage, yielding a record per iteration."""
    control = control or FitControl()
    reports = reports if reports is not None else []
    total = sum(s.iterations for s in stages)
    step = 0
    for spec in stages:
        report = StageReport(spec.name)
        reports.append(report)
        start = time.perf_counter()
        if spec.large_steps_lambda > 0 and "offsets" in spec.variables:
            variables.set_large_steps(LargeSteps(objective.topology, spec.large_steps_lambda, variables.model.device))
        objective.begin_stage(spec, variables)
        uniform = spec.large_steps_lambda > 0 and spec.uniform_offsets
        groups = [{"params": variables.tensors(v), "lr": spec.lr[v], "name": v,
                   "uniform": uniform and v == "offsets"} for v in spec.variables]
        opt = Adam(groups)
        best = math.inf
        history: list[float] = []
        good = (variables.snapshot(), copy.deepcopy(opt.state_dict()))
        pins_version = -1
        it = 0
        levels = max(1, spec.normal_levels)
        level = 0
        while it < spec.iterations:
            if levels > 1 and it >= (level * spec.iterations) // levels:
                objective.set_normal_res(max(8, spec.normal_res >> (levels - 1 - level)))
                level += 1
                # A finer level changes the objective: divergence and plateau tests start over.
                history.clear()
                best = math.inf
            control.checkpoint()
            version, pins = control.pins()
            if version != pins_version:
                objective.set_pins(pins, variables)
                pins_version = version
                # New pins change the objective: divergence and plateau tests start over.
                history.clear()
                best = math.inf
            opt.zero_grad(set_to_none=True)
            terms = objective.terms(variables, spec.weights)
            loss = sum(spec.weights.get(k, 0.0) * v for k, v in terms.items() if spec.weights.get(k, 0.0))
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            if not math.isfinite(value) or value > DIVERGENCE_FACTOR * max(best, 1e-12):
                _roll_back(spec, report, variables, opt, good, "loss stayed non-finite or diverging")
                continue
            loss.backward()
            grads_ok = all(
                p.grad is None or torch.isfinite(p.grad).all() for g in opt.param_groups for p in g["params"]
            )
            if not grads_ok:
                _roll_back(spec, report, variables, opt, good, "gradients stayed non-finite")
                continue
            if value <= best:
                best = value
            good = (variables.snapshot(), copy.deepcopy(opt.state_dict()))
            held = variables.head_placement() if pins is not None else None
            if held is not None:
                variables.hold_head_placement(held)  # clears the gradients before the step
            opt.step()
            if held is not None:
                variables.hold_head_placement(held)
            variables.project_bounds()
            it += 1
            step += 1
            losses = {k: float(v.detach()) for k, v in terms.items()}
            losses["total"] = value
            report.losses = losses
            with torch.no_grad():
                verts = objective.current_verts(variables)
                camera = variables.camera_record(0)
            yield LoopRecord(spec.name, it, step, total, losses, verts, camera)
            history.append(value)
            if len(history) > spec.plateau_patience:
                old = history[-spec.plateau_patience - 1]
                if old - value < spec.plateau_rel * abs(old):
                    if 1 < levels and level < levels:
                        # Plateau at a coarse level: go on at the next one.
                        skip = (level * spec.iterations) // levels - it
                        it += skip
                        step += skip
                        continue
                    report.stopped_early = True
                    break
        report.iterations = it
        report.seconds = time.perf_counter() - start
        step += spec.iterations - it  # keep the progress bar honest when a stage stops early
