"""Errors raised while reading photos and extracting priors.

Each message says what went wrong and what the user can do about it; the CLI
and the add-on show them verbatim.
"""

from __future__ import annotations


class PriorError(Exception):
    """Base class of every error raised by ``core.priors``."""


class ImageError(PriorError, ValueError):
    """A photo or a map file cannot be read (missing, corrupt, unsupported, too big)."""


class CueError(ImageError):
    """A photo's dense-cue map (a normal map file, ...) cannot be used; the message names the photo."""


class NoFaceError(PriorError):
    """No face was found in a photo (or the requested face does not exist)."""


class CheckpointError(PriorError):
    """A network checkpoint is missing, unreadable or does not match the network."""


class MultipleFacesWarning(UserWarning):
    """A photo holds several faces and the largest one was chosen."""
