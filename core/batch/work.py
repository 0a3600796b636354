"""One person's fit, as a batch worker runs it: photos in, a complete result set out (or a failed row).

Runs inside a Ray worker (or the calling process); never raises for a person's
own trouble (no face, unreadable photo, non-finite fit): that becomes the
row's error and the batch goes on.
"""

from __future__ import annotations

import functools
import pathlib
import time

from .people import Person

# What a row of summary.json holds (scripts/batch_fit.py writes the same keys).
ROW_KEYS = ("photo", "status", "seconds", "error", "out")
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


def done_already(person: Person, out: pathlib.Path) -> bool:
    """The person's folder holds a complete result set (an interrupted write does not count)."""
    from core.fit.result_set import ResultSetError, read_result_set

    try:
        read_result_set(person.folder(out))
        return True
    except ResultSetError:
        return False


def _row(person: Person, out: pathlib.Path) -> dict:
    """A person's summary row before their fit: failed until it succeeds."""
    return {"photo": person.photos[0] if len(person.photos) == 1 else str(pathlib.Path(person.photos[0]).parent),
            "status": FAILED, "seconds": 0.0, "error": "", "out": str(person.folder(out))}


def fit_person(person: Person, out: pathlib.Path, options, device: str, template=None) -> dict:
    """Fit one person (``options``: a ``FitOptions``) into ``out/<name>-<key>/``; returns a summary row
    (status ok, failed or skipped)."""
    from core.fit.api import FitJob, PhotoInput
    from core.fit.outputs import write_result_files
    from core.fit.pipeline import run_fit, views_from_photos
    from core.template import load_default

    row = _row(person, out)
    t0 = time.perf_counter()
    if done_already(person, out):
        row.update(status=SKIPPED)
        return row
    try:
        job = FitJob([PhotoInput(pathlib.Path(p).name, path=p) for p in person.photos],
                     template if template is not None else load_default(), options, device)
        inputs = views_from_photos(job.photos, options)
        result = None
        for rec in run_fit(job, inputs=inputs):
            result = rec.result or result
        write_result_files(person.folder(out), job.template, result, inputs.photos, inputs.faces)
        row["status"] = OK
    except Exception as exc:  # one person's trouble must not stop the batch: it is their row's error
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


@functools.lru_cache(maxsize=1)
def _default_template():
    """The default template, loaded once per worker process (a Ray worker runs many tasks)."""
    from core.template import load_default

    return load_default()


def fit_people(people: list[Person], out: str, options, device: str, threads: int, together: bool = True) -> list[dict]:
    """A batch task: several people in one process (the template loaded once a process). With ``together``
    the people with one photo each are fitted in one batched optimisation (``core.fit.people``); the others,
    and every person with ``together`` off, one after another."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    template = _default_template()
    if not together or len(people) < 2:
        return [fit_person(p, pathlib.Path(out), options, device, template) for p in people]
    return _fit_together(people, pathlib.Path(out), options, device, template)


def _fit_together(people: list[Person], out: pathlib.Path, options, device: str, template) -> list[dict]:
    """The task's people read one by one, fitted in one batched optimisation, their files written one by one.
    A row's seconds: the person's own reading and writing plus an equal share of the batched fit."""
    from core.fit.api import PhotoInput
    from core.fit.outputs import write_result_files
    from core.fit.people import fit_people as fit_batch
    from core.fit.pipeline import finish_result, views_from_photos

    rows, inputs, seconds = [], [], []
    for person in people:
        t0 = time.perf_counter()
        row = _row(person, out)
        rows.append(row)
        inputs.append(None)
        if done_already(person, out):
            row["status"] = SKIPPED
        else:
            try:
                inputs[-1] = views_from_photos([PhotoInput(pathlib.Path(p).name, path=p) for p in person.photos], options)
            except Exception as exc:  # one person's trouble must not stop the batch: it is their row's error
                row["error"] = f"{type(exc).__name__}: {exc}"
        seconds.append(time.perf_counter() - t0)
    todo = [i for i, x in enumerate(inputs) if x is not None]
    t0 = time.perf_counter()
    results = fit_batch(template, [inputs[i].views for i in todo], options, device=device) if todo else []
    share = (time.perf_counter() - t0) / max(1, len(todo))
    for i, result in zip(todo, results):
        t0 = time.perf_counter()
        try:
            if isinstance(result, Exception):
                raise result
            finish_result(template, result, inputs[i], options, device)
            write_result_files(people[i].folder(out), template, result, inputs[i].photos, inputs[i].faces)
            rows[i]["status"] = OK
        except Exception as exc:
            rows[i]["error"] = f"{type(exc).__name__}: {exc}"
        seconds[i] += share + time.perf_counter() - t0
    for row, s in zip(rows, seconds):
        row["seconds"] = round(s, 2)
    return rows
