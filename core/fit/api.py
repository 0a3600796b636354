"""What the server, the CLI and the add-on see of a fit.

``run_fit(job, control)`` is a generator: it yields a ``FitRecord`` per
optimiser iteration (stage, iteration, loss terms, current vertices) and its
last record carries the ``FitResult``. ``control`` (a ``FitControl``) delivers
pins, pause/resume and cancel between iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PhotoInput:
    """One photo: a path on the core's machine or the encoded file bytes."""

    name: str
    path: str | None = None
    data: bytes | None = None
    face_index: int | None = None  # which face when several (None: the largest)

    def __post_init__(self):
        if (self.path is None) == (self.data is None):
            raise ValueError(f"photo {self.name!r}: give exactly one of path or data")


@dataclass
class FitJob:
    """A fit request. ``template`` None means the default head template."""

    photos: list[PhotoInput]
    template: object | None = None
    options: dict = field(default_factory=dict)
    device: str = "cpu"


@dataclass
class FitResult:
    """Everything a fit produced, as plain arrays + JSON-able metadata.

    arrays: name -> numpy array (fitted posed vertices ``verts`` (N, 3) float32,
    neutral identity ``verts_neutral``, ``joint_rest`` (J, 3), camera ``K``,
    ``R``, ``t`` per view, controllers, ...); meta: the report (stages,
    seconds, device, landmark error, ...).
    """

    arrays: dict[str, np.ndarray]
    meta: dict


@dataclass
class FitRecord:
    """One optimiser iteration.

    verts: (N, 3) float32 current posed vertices (world, metres).
    step / total_steps count over all stages (for a progress bar).
    camera: the first view's current camera (see the field), when known.
    """

    stage: str
    iteration: int
    step: int
    total_steps: int
    losses: dict[str, float]
    verts: np.ndarray
    result: FitResult | None = None
    # The first view's current camera: {"K": (3, 3), "R": (3, 3), "t": (3,)} float32,
    # "width", "height" (so a viewer can look through it while the fit runs).
    camera: dict | None = None
