"""MediaPipe's legacy solutions (FaceMesh, face detection, selfie segmentation), imported once.

``import mediapipe`` runs ``mediapipe.python.solutions``, whose drawing helpers
import ``matplotlib.pyplot`` at module level: 0.3 s of a one-photo fit's
8-9 s on a 2-core machine, for plotting functions Likeness never calls. While
MediaPipe imports, ``matplotlib`` and ``matplotlib.pyplot`` are therefore
stand-in modules that import the real one the first time anything is read from
them; once MediaPipe is in, the stand-ins leave ``sys.modules``, so any later
``import matplotlib`` gets the real module as usual. Where matplotlib is already
imported nothing changes.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

PACKAGE, PYPLOT = "matplotlib", "matplotlib.pyplot"

_lock = threading.RLock()


class _DeferredModule(types.ModuleType):
    """A module that imports ``name`` on the first attribute read and forwards every read to it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # Found directly (not through __getattr__), so the import system's own look at a
        # module in sys.modules does not load it.
        self.__spec__ = None
        self.__dict__["_real"] = None

    def __getattr__(self, attr: str):
        real = self.__dict__["_real"]
        if real is None:
            name = self.__name__
            with _lock:
                if sys.modules.get(name) is self:
                    del sys.modules[name]
            real = importlib.import_module(name)
            self.__dict__["_real"] = real
        return getattr(real, attr)


def solutions() -> types.ModuleType:
    """``mediapipe.python.solutions``, imported without loading matplotlib's pyplot.

    Raises ImportError when MediaPipe is not installed."""
    with _lock:
        if "mediapipe.python.solutions" in sys.modules or PACKAGE in sys.modules:
            return importlib.import_module("mediapipe.python.solutions")
        stand_ins = {PACKAGE: _DeferredModule(PACKAGE), PYPLOT: _DeferredModule(PYPLOT)}
        # `import matplotlib.pyplot as plt` reads the package's `pyplot`: found here, nothing loads.
        stand_ins[PACKAGE].__dict__["pyplot"] = stand_ins[PYPLOT]
        sys.modules.update(stand_ins)
        try:
            return importlib.import_module("mediapipe.python.solutions")
        finally:
            for name, stand_in in stand_ins.items():
                if sys.modules.get(name) is stand_in:
                    del sys.modules[name]
