"""Who is in a studio batch, and where each person's result goes.

A batch argument is a photo file (one person) or a folder: each photo directly
inside it is one person, each sub-folder holding photos is one person seen in
several photos. A person's key is a hash of its photos' bytes and the fit
options, so a rerun finds what is done (a complete result set in
``OUT/<name>-<key>/``) and a changed photo or option is fitted again.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
KEY_CHARS = 12
READ_CHUNK = 1 << 20


class BatchInputError(ValueError):
    """A batch argument that names no photo (the message says which)."""


@dataclass(frozen=True)
class Person:
    """One person: a name (file stem or folder name), their photos, and a content key."""

    name: str
    photos: tuple[str, ...]
    key: str

    def folder(self, out: pathlib.Path) -> pathlib.Path:
        return out / f"{self.name}-{self.key}"


def _is_photo(path: pathlib.Path) -> bool:
    return path.is_file() and path.suffix.lower() in PHOTO_EXTENSIONS


def _photos_in(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if _is_photo(p))


def content_key(photos: list[pathlib.Path], options: dict) -> str:
    """Hash of the photos' bytes (in order) and the options: the person's identity in the output folder."""
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in photos:
        h.update(b"\0photo\0")
        with open(path, "rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                h.update(chunk)
    return h.hexdigest()[:KEY_CHARS]


def collect_people(args: list[str], options: dict) -> list[Person]:
    """People from photo files and folders, in argument order (folders sorted); BatchInputError names a bad one."""
    groups: list[tuple[str, list[pathlib.Path]]] = []
    for arg in args:
        path = pathlib.Path(arg)
        if _is_photo(path):
            groups.append((path.stem, [path.resolve()]))
        elif path.is_dir():
            found = False
            for entry in sorted(path.iterdir()):
                if _is_photo(entry):
                    groups.append((entry.stem, [entry.resolve()]))
                    found = True
                elif entry.is_dir() and _photos_in(entry):
                    groups.append((entry.name, [p.resolve() for p in _photos_in(entry)]))
                    found = True
            if not found:
                raise BatchInputError(f"{arg}: no photos ({', '.join(PHOTO_EXTENSIONS)}) in it or in its sub-folders")
        elif path.exists():
            raise BatchInputError(f"{arg}: not a photo ({', '.join(PHOTO_EXTENSIONS)}) or a folder")
        else:
            raise BatchInputError(f"{arg}: no such file or folder")
    return [Person(name, tuple(str(p) for p in paths), content_key(paths, options)) for name, paths in groups]
