"""Opening and creating files without trusting the path.

Inputs (photos, templates, maps) are opened only if they are regular files:
a FIFO, a device such as ``/dev/zero`` or a folder is refused before a byte is
read, and the size is checked against the reader's budget. Outputs are created
with ``O_EXCL | O_NOFOLLOW``: a planted symlink or an existing file at the
name is never written through.
"""

from __future__ import annotations

import os
import stat


class UnsafeFileError(OSError):
    """A path that is not a readable regular file within its budget; the message is one line."""


def open_regular(path: str | os.PathLike, what: str, max_bytes: int | None = None):
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    The check is made on the opened descriptor (``fstat``), so swapping the
    file after a check cannot slip a device or a FIFO in; ``O_NONBLOCK`` keeps
    opening a FIFO from blocking. Raises UnsafeFileError naming ``what``.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnsafeFileError(f"{what} not found: {path!r}; check the path") from None
    except OSError as exc:
        raise UnsafeFileError(f"cannot open the {what} {path!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UnsafeFileError(f"the {what} {path!r} is {kind}; pass a file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafeFileError(f"the {what} {path!r} is {st.st_size} bytes, above the limit of {max_bytes}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def create_new(path: str | os.PathLike, mode: int = 0o644):
    """Create ``path`` for binary writing; fails if anything (file or link) is already there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(os.fspath(path), flags, mode), "wb")
