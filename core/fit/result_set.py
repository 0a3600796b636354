"""A result folder whose files appear together or not at all.

Files are written into a private temporary folder inside the output folder
(``tempfile.mkdtemp``: fresh, owner-only, so nothing planted there is followed),
then moved into place with ``os.replace`` while SIGINT/SIGTERM are held off,
``report.json`` last; its ``files`` entry lists every file with its size and
sha256. A set whose report does not match its files (a SIGKILL mid-move) is
refused by :func:`read_result_set` and replaced by the next run. Files in the
output folder that Likeness did not write (not listed in its previous report)
are never touched. No torch here: readers and tests import it cheaply.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import signal
import threading

from core.files import create_new

REPORT = "report.json"
# Called after each file is moved into place; tests set it to widen the window a signal can hit.
_after_each_move = None


class ResultSetError(ValueError):
    """A result folder whose report.json does not match its files (an interrupted write)."""


def _digest(path: pathlib.Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


@contextlib.contextmanager
def _signals_held():
    """SIGINT/SIGTERM that arrive inside are delivered when it ends (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {sig: signal.signal(sig, lambda n, _f: caught.append(n)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def publish_result_set(out: pathlib.Path, staging: pathlib.Path, report: dict) -> dict:
    """Move every file of ``staging`` into ``out``, then a report.json listing them; returns {name: path}.

    Raises ResultSetError (moving nothing) when ``out`` holds a file of the
    same name that the previous report does not list.
    """
    out = pathlib.Path(out)
    files = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name != REPORT)
    listed = _listed_files(out)
    previous = listed or set()
    foreign = [n for n in files if os.path.lexists(out / n) and n not in previous]
    if listed is None:
        foreign.append(REPORT)
    if foreign:
        raise ResultSetError(f"{out} already holds {', '.join(sorted(foreign))} that Likeness did not write; "
                             "choose an empty --out folder")
    report = {**report, "files": {n: _digest(staging / n) for n in files}}
    # First a report that names every file this run or the last one wrote, with no hashes: until
    # the final report lands the folder reads as incomplete, yet the next run knows the files as ours.
    pending = {"complete": False, "files": {n: None for n in sorted(previous | set(files))}}
    with _signals_held():
        _place(staging, out, REPORT, json.dumps(pending).encode())
        for name in files:
            os.replace(staging / name, out / name)
            if _after_each_move is not None:
                _after_each_move()
        for stale in sorted(previous - set(files)):  # an older run's file this run did not write
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out / stale)
        _place(staging, out, REPORT, (json.dumps(report, indent=2) + "\n").encode())
    return {name: out / name for name in files + [REPORT]}


def _listed_files(out: pathlib.Path) -> set[str] | None:
    """Names the folder's report.json lists (a Likeness report); set() without one; None for a foreign report.json."""
    if not os.path.lexists(out / REPORT):
        return set()
    try:
        files = json.loads((out / REPORT).read_text())["files"]
        return {n for n in files if isinstance(n, str) and pathlib.Path(n).name == n}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _place(staging: pathlib.Path, out: pathlib.Path, name: str, body: bytes) -> None:
    """Write ``body`` to ``out/name`` atomically (written in ``staging``, flushed, then renamed)."""
    tmp = staging / f".{name}.tmp"
    with create_new(tmp) as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out / name)


def read_result_set(out_dir) -> dict:
    """The report of a complete result folder; ResultSetError when any listed file is missing or differs."""
    out = pathlib.Path(out_dir)
    try:
        report = json.loads((out / REPORT).read_text())
        files = report["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ResultSetError(f"{out} holds no complete Likeness result (no valid {REPORT}); run the fit again") from None
    for name, want in files.items():
        if pathlib.Path(name).name != name:
            raise ResultSetError(f"{out}/{REPORT} lists {name!r}, which is not a file name in that folder")
        path = out / name
        if not path.is_file() or path.is_symlink() or _digest(path) != want:
            raise ResultSetError(f"{out}: {name} does not match {REPORT} (an interrupted write); run the fit again")
    return report


def check_result_file(path) -> None:
    """Refuse a file read back from a result folder whose set is incomplete.

    When the file's folder holds a ``report.json``, the whole set must match it
    (ResultSetError otherwise); a file outside a Likeness result folder passes.
    """
    folder = pathlib.Path(path).parent
    if os.path.lexists(folder / REPORT):
        read_result_set(folder)
