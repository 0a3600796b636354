"""The coarse-to-fine stage schedule, as plain data.

A schedule is a list of ``StageSpec``: which variables a stage optimises, for
how many iterations, with which learning rates and loss weights. Presets cover
the common cases; any field can be overridden from JSON/dict options
(``{"stages": {"vertex": {"iterations": 300}}}``) without touching code.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

# Variables a stage may optimise.
VARIABLES = (
    "shape",        # bounded identity controllers, [-1, 1]
    "expression",   # bounded expression controllers, [0, 1]
    "pose",         # head rotation relative to the neck (axis-angle)
    "camera",       # per-view world-to-camera rotation + translation
    "focal",        # per-view focal length (log)
    "joints",       # per-joint local rotation / translation / log-scale
    "offsets",      # per-vertex offsets (optionally Laplacian-parameterised)
)

# Loss terms a stage may weight (names match core/fit/objective.py).
LOSSES = (
    "landmark", "normal", "pins",
    "evgcc", "conformal", "flip", "curve", "disp", "laplacian", "symmetry",
    "controller_prior", "joint_prior",
)


@dataclass
class StageSpec:
    name: str
    variables: tuple[str, ...]
    iterations: int
    lr: dict[str, float]
    weights: dict[str, float]
    # Stop early when the total loss improved by less than ``plateau_rel``
    # (relative) over the last ``plateau_patience`` iterations.
    plateau_patience: int = 30
    plateau_rel: float = 1e-3
    # Vertex stage: optimise offsets through (I + lambda L) ("large steps").
    large_steps_lambda: float = 0.0
    # Conformal / face-flip terms use the k largest deviations.
    top_k: int = 512
    # Normal maps are compared at most this many pixels on their long side
    # (coarse stages need less detail and run faster).
    normal_res: int = 256

    def __post_init__(self):
        unknown = set(self.variables) - set(VARIABLES)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown variables {sorted(unknown)}; known: {VARIABLES}")
        unknown = set(self.weights) - set(LOSSES)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown loss weights {sorted(unknown)}; known: {LOSSES}")
        missing = set(self.variables) - set(self.lr)
        if missing:
            raise ValueError(f"stage {self.name!r}: no learning rate for {sorted(missing)}")
        if self.iterations < 0:
            raise ValueError(f"stage {self.name!r}: iterations must be >= 0")


def _rig(iterations: int) -> StageSpec:
    return StageSpec(
        name="rig",
        variables=("shape", "expression", "pose", "camera", "focal"),
        iterations=iterations,
        lr={"shape": 0.05, "expression": 0.03, "pose": 0.005, "camera": 0.002, "focal": 0.005},
        weights={"landmark": 100.0, "normal": 1.0, "pins": 1.0, "controller_prior": 0.3},
        normal_res=128,
    )


def _joint(iterations: int) -> StageSpec:
    return StageSpec(
        name="joint",
        variables=("joints", "camera"),
        iterations=iterations,
        lr={"joints": 0.004, "camera": 0.0005},
        weights={"landmark": 100.0, "normal": 1.0, "pins": 1.0, "joint_prior": 1e-2, "evgcc": 0.05,
                 "conformal": 0.05, "flip": 0.05},
        normal_res=192,
        plateau_patience=40,
        plateau_rel=1e-4,
    )


def _vertex(iterations: int) -> StageSpec:
    return StageSpec(
        name="vertex",
        # The cameras stay free (small steps): with a camera held slightly wrong,
        # the normal term would bend the surface to explain the camera's error.
        variables=("offsets", "camera", "focal"),
        iterations=iterations,
        # Offsets move through (I + 20 L)^-1 (large steps): smooth updates.
        lr={"offsets": 1e-3, "camera": 5e-4, "focal": 2e-3},
        weights={"landmark": 50.0, "normal": 1.0, "pins": 1.0, "evgcc": 0.1, "conformal": 0.1, "flip": 0.1,
                 "curve": 0.01, "disp": 1e-3, "laplacian": 0.5},
        large_steps_lambda=20.0,
        plateau_patience=60,
        plateau_rel=1e-4,
    )


PRESETS: dict[str, list[StageSpec]] = {
    "draft": [_rig(60), _joint(30), _vertex(40)],
    "default": [_rig(150), _joint(80), _vertex(150)],
    "high": [_rig(250), _joint(150), _vertex(300)],
}


def make_schedule(preset: str = "default", overrides: dict | None = None) -> list[StageSpec]:
    """A copy of a preset with per-stage overrides applied.

    overrides: {"stages": {"rig": {"iterations": 10, "lr": {...}, "weights": {...}}},
                "only": ["rig", "vertex"]}  (``only`` keeps the listed stages).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    stages = copy.deepcopy(PRESETS[preset])
    overrides = overrides or {}
    per_stage = overrides.get("stages", {})
    unknown = set(per_stage) - {s.name for s in stages}
    if unknown:
        raise ValueError(f"overrides name unknown stages {sorted(unknown)}")
    out = []
    for spec in stages:
        fields = asdict(spec)
        for key, value in per_stage.get(spec.name, {}).items():
            if key not in fields:
                raise ValueError(f"stage {spec.name!r}: unknown setting {key!r}")
            if isinstance(fields[key], dict):
                fields[key] = {**fields[key], **value}
            else:
                fields[key] = value
        fields["variables"] = tuple(fields["variables"])
        out.append(StageSpec(**fields))
    if "only" in overrides:
        keep = list(overrides["only"])
        out = [s for s in out if s.name in keep]
    return out


def schedule_to_dict(stages: list[StageSpec]) -> list[dict]:
    return [asdict(s) for s in stages]
