"""Thread-safe control of a running fit: pins, pause/resume, cancel.

The fitting loop polls a ``FitControl`` once per iteration, so every request
takes effect within one iteration. Callers (the server, the CLI's Ctrl-C
handler, tests) may call any method from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


class FitCancelled(Exception):
    """Raised inside the loop when a cancel request is seen."""


@dataclass(frozen=True)
class Pins:
    """Soft positional constraints the artist set by grabbing vertices.

    ids: (P,) int64 template vertex indices; targets: (P, 3) float32 world
    positions in metres; weight: strength relative to the landmark term.
    """

    ids: np.ndarray
    targets: np.ndarray
    weight: float = 1.0

    def __post_init__(self):
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        targets = np.asarray(self.targets, dtype=np.float32).reshape(-1, 3)
        if ids.shape[0] != targets.shape[0]:
            raise ValueError(f"pins: {ids.shape[0]} ids but {targets.shape[0]} targets")
        if not np.isfinite(targets).all():
            raise ValueError("pins: targets contain NaN or infinity")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "targets", targets)


class FitControl:
    """Requests from outside the loop; the loop reads them between iterations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resume = threading.Event()
        self._resume.set()
        self._cancel = threading.Event()
        self._pins: Pins | None = None
        self._pins_version = 0

    # -- requests (any thread) -------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()
        self._resume.set()  # a paused loop must wake up to see the cancel

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def set_pins(self, pins: Pins | None) -> None:
        """Replace all pins (``None`` or empty clears them)."""
        with self._lock:
            self._pins = pins if pins is not None and len(pins.ids) else None
            self._pins_version += 1

    # -- state ------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def pins(self) -> tuple[int, Pins | None]:
        """(version, pins): the version changes whenever pins are replaced."""
        with self._lock:
            return self._pins_version, self._pins

    # -- loop side ----------------------------------------------------------
    def checkpoint(self, poll_seconds: float = 0.05) -> None:
        """Called by the loop once per iteration: blocks while paused, raises on cancel."""
        while not self._resume.wait(poll_seconds):
            if self._cancel.is_set():
                break
        if self._cancel.is_set():
            raise FitCancelled()
