"""What the core does with one connection's messages.

Each connection is an isolated session (``bridge.server`` gives every client
its own): its templates and jobs are invisible to other clients, a second
client never gets "busy", and when a connection ends, its running jobs are
cancelled and their threads freed at the next iteration. ``JobRegistry``
counts every session's jobs (for the caps) and tells each session its own.

What one connection may make the core spend is bounded: MAX_JOBS_PER_SESSION
running jobs (MAX_JOBS across sessions), MAX_PINS pins per message, one
template reply being built at a time; paths in messages are opened only when
the connection may open paths (``--allow-paths`` or a same-user Unix socket),
and only regular files.

Each job runs on its own worker thread with a ``FitControl``; pin, pause,
resume and cancel messages go to that control, which the loop polls once per
iteration. Every job ends with exactly one result, cancelled or error.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import traceback

import numpy as np

from bridge import schema
from bridge.protocol import Message, ProtocolError, wire_dtype
from bridge.server import Connection, error_message
from bridge.template import TemplateMessage
from core.fit.api import FitJob, PhotoInput
from core.fit.control import FitCancelled, FitControl, Pins
from core.fit.options import FitOptions
from core.priors.errors import PriorError
from core.template import Template, TemplateError, load_default
from core.template import load as load_template

# Upper bound on replay length (frames), so a typo cannot keep a worker busy for days.
MAX_REPLAY_FRAMES = 10_000_000
# Frames a fit job streams per second at most (each stage's first iteration always gets one).
FRAME_RATE_HZ = 30.0
# Running jobs: per connection, and across all connections.
MAX_JOBS_PER_SESSION = 2
MAX_JOBS = 4
# Pins in one message, the largest pin weight, and how far (metres) a pin target may lie from the origin.
MAX_PINS = 100_000
MAX_PIN_WEIGHT = 1e4
MAX_PIN_TARGET_M = 100.0
# How long on_close waits for a session's workers to stop.
JOIN_TIMEOUT_S = 2.0
DEFAULT_TEMPLATE = "default"


class JobRegistry:
    """All running jobs of all sessions (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], str] = {}
        self.sessions = 0

    def add(self, session: str, job: str, kind: str) -> str | None:
        """Register a job; returns why it cannot run (a cap is reached) or None."""
        with self._lock:
            own = sum(1 for s, _ in self._jobs if s == session)
            if own >= MAX_JOBS_PER_SESSION:
                return f"this connection already runs {MAX_JOBS_PER_SESSION} jobs; wait for one to end"
            if len(self._jobs) >= MAX_JOBS:
                return f"the core already runs {MAX_JOBS} jobs; try again when one ends"
            self._jobs[(session, job)] = kind
            return None

    def remove(self, session: str, job: str) -> None:
        with self._lock:
            self._jobs.pop((session, job), None)

    def session_opened(self) -> None:
        with self._lock:
            self.sessions += 1

    def session_closed(self) -> None:
        with self._lock:
            self.sessions -= 1

    def snapshot(self, session: str) -> dict:
        """The number of sessions and ``session``'s own running jobs."""
        with self._lock:
            return {
                "sessions": self.sessions,
                "jobs": [{"session": s, "id": j, "type": t} for (s, j), t in sorted(self._jobs.items())
                         if s == session],
            }


class _Job:
    def __init__(self, job_id: str, kind: str):
        self.id = job_id
        self.kind = kind
        self.control = FitControl()
        self.thread: threading.Thread | None = None
        self.num_verts = 0  # pins must name vertices below this


@functools.lru_cache(maxsize=1)
def _default_template() -> Template:
    return load_default()


def frame_message(job: str, stage: str, iteration: int, step: int, total: int, losses: dict,
                  verts: np.ndarray, camera: dict | None = None) -> Message:
    """A frame; verts: (N, 3) float32 (converted if needed); camera: the first
    view's current camera (FitRecord.camera) or None."""
    fields = {"stage": stage, "iteration": int(iteration), "step": int(step), "total": int(total),
              "losses": {k: float(v) for k, v in losses.items()}, "t_emit": time.monotonic()}
    buffers = {"verts": np.asarray(verts, dtype=np.float32)}
    if camera is not None:
        fields.update(width=int(camera["width"]), height=int(camera["height"]))
        buffers.update({k: np.asarray(camera[k], dtype=np.float32) for k in ("K", "R", "t")})
    return Message(schema.FRAME, job=job, fields=fields, buffers=buffers)


def _wire_arrays(arrays: dict) -> dict[str, np.ndarray]:
    """Result arrays as wire dtypes; raises ProtocolError naming an array that cannot travel."""
    out = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        try:
            wire_dtype(arr)
        except ProtocolError as exc:
            raise ProtocolError(f"result array {name!r}: {exc}") from None
        out[name] = arr
    return out


class Session:
    """The handler ``bridge.server.Server`` creates per connection."""

    def __init__(self, conn: Connection, registry: JobRegistry):
        self.conn = conn
        self.registry = registry
        self.templates: dict[str, Template] = {}
        self.jobs: dict[str, _Job] = {}
        self.finished: set[str] = set()
        self._lock = threading.Lock()
        self._template_reply = threading.Lock()  # one template reply built at a time
        self._closed = False
        registry.session_opened()

    # -- dispatch (connection reader thread) ------------------------------------
    def on_message(self, msg: Message) -> None:
        handler = {
            schema.JOB: self._on_job,
            schema.TEMPLATE: self._on_template,
            schema.GET_TEMPLATE: self._on_get_template,
            schema.PIN: self._on_pin,
            schema.PAUSE: lambda m: self._control(m).pause(),
            schema.RESUME: lambda m: self._control(m).resume(),
            schema.CANCEL: lambda m: self._control(m).cancel(),
            schema.STATUS: self._on_status,
        }.get(msg.kind)
        if handler is None:
            return  # kinds a client never sends to the core are ignored
        try:
            handler(msg)
        except _Reply as reply:
            self.conn.send(reply.reply)

    def busy(self) -> bool:
        with self._lock:
            return bool(self.jobs)

    def on_close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self.jobs.values())
        for job in jobs:
            job.control.cancel()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(JOIN_TIMEOUT_S)
        self.registry.session_closed()

    # -- control ---------------------------------------------------------------------
    def _job(self, msg: Message) -> _Job:
        with self._lock:
            job = self.jobs.get(msg.job)
            finished = msg.job in self.finished
        if job is None:
            code = schema.E_JOB_FINISHED if finished else schema.E_UNKNOWN_JOB
            what = "has already finished" if finished else "is not a job of this session"
            raise _Reply(error_message(code, f"job {msg.job!r} {what}", msg.job, about=msg.kind))
        return job

    def _control(self, msg: Message) -> FitControl:
        return self._job(msg).control

    def _on_pin(self, msg: Message) -> None:
        """Pins are checked whole before the job sees them; a bad message leaves the job's pins as they were."""
        job = self._job(msg)
        ids, targets = msg.buffers["ids"], msg.buffers["targets"]
        weight = msg.fields.get("weight", 1.0)
        problem = None
        if len(ids) > MAX_PINS:
            problem = f"{len(ids)} pins in one message; at most {MAX_PINS}"
        elif len(ids) and (ids.min() < 0 or ids.max() >= job.num_verts):
            problem = f"pin ids must name vertices 0..{job.num_verts - 1} of this job's mesh"
        elif not (np.isfinite(targets).all() and (np.abs(targets) <= MAX_PIN_TARGET_M).all()):
            problem = f"pin targets must be finite positions within {MAX_PIN_TARGET_M:g} m of the origin"
        elif not (isinstance(weight, (int, float)) and np.isfinite(weight) and 0 <= weight <= MAX_PIN_WEIGHT):
            problem = f"pin weight must be a number in 0..{MAX_PIN_WEIGHT:g}"
        if problem is not None:
            raise _Reply(error_message(schema.E_BAD_MESSAGE, problem, msg.job, about=msg.kind))
        job.control.set_pins(Pins(ids, targets, float(weight)))

    def _on_status(self, msg: Message) -> None:
        self.conn.send(Message(schema.STATUS, job=msg.job, fields=self.registry.snapshot(self.conn.session_id)))

    def _path(self, msg: Message, path: str, what: str) -> str:
        """``path`` if this connection may name files on the core's machine, else a bad_message reply."""
        if not self.conn.may_open_paths:
            raise _Reply(error_message(schema.E_BAD_MESSAGE, f"this core does not open paths sent by clients; "
                                       f"send the {what} inline (or start the core with --allow-paths)",
                                       msg.job, about=msg.kind))
        return path

    # -- templates ---------------------------------------------------------------
    def _on_template(self, msg: Message) -> None:
        try:
            if "path" in msg.fields:
                template = load_template(self._path(msg, msg.fields["path"], "template"))
            else:
                wire = TemplateMessage.from_message(msg)
                template = Template.from_arrays(wire.arrays, wire.meta)
        except (ProtocolError, TemplateError) as exc:
            raise _Reply(error_message(schema.E_BAD_MESSAGE, str(exc), msg.job, about=msg.kind)) from None
        with self._lock:
            self.templates[msg.job] = template
        self.conn.send(Message(schema.STATUS, job=msg.job, fields={"template": msg.job, "verts": template.num_verts}))

    def _on_get_template(self, msg: Message) -> None:
        name = msg.fields["name"]
        with self._lock:
            template = self.templates.get(name)
        if template is None and name != DEFAULT_TEMPLATE:
            raise _Reply(error_message(schema.E_UNKNOWN_JOB, f"no template named {name!r}", msg.job, about=msg.kind))

        def send() -> None:
            with self._template_reply:
                if self.conn.closed.is_set():
                    return
                try:
                    chosen = template if template is not None else _default_template()
                    arrays, meta = chosen.to_arrays()
                    reply = TemplateMessage.from_arrays(arrays, meta).to_message(msg.job)
                except Exception as exc:
                    reply = error_message(schema.E_FAILED, f"{type(exc).__name__}: {exc}", msg.job,
                                          traceback.format_exc(), about=msg.kind)
                self.conn.send(reply)
                # the next reply is built only once this one is on the wire (or the client is dropped)
                self.conn.wait_sent()

        # building the default head can take a while: keep reading control messages meanwhile
        threading.Thread(target=send, name=f"likeness-template-{msg.job}", daemon=True).start()

    # -- jobs ----------------------------------------------------------------------
    def _on_job(self, msg: Message) -> None:
        with self._lock:
            clash = msg.job in self.jobs or msg.job in self.finished
        if clash:
            raise _Reply(error_message(schema.E_DUPLICATE_JOB, f"job id {msg.job!r} was already used in this session",
                                       msg.job, about=msg.kind))
        job = _Job(msg.job, msg.fields["type"])
        if job.kind == schema.JOB_REPLAY:
            work = self._replay_work(msg, job)
        else:
            work = self._fit_work(msg, job)
        refused = self.registry.add(self.conn.session_id, job.id, job.kind)
        if refused:
            raise _Reply(error_message(schema.E_UNAVAILABLE, refused, msg.job, about=msg.kind))
        with self._lock:
            self.jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job, work), name=f"likeness-job-{job.id}", daemon=True)
        job.thread.start()

    def _replay_work(self, msg: Message, job: _Job):
        verts = msg.buffers["verts"]
        job.num_verts = verts.shape[1] if verts.ndim > 1 else 0
        count = msg.fields.get("count", verts.shape[0])
        if verts.shape[0] == 0 or not 0 <= count <= MAX_REPLAY_FRAMES:
            raise _Reply(error_message(schema.E_BAD_MESSAGE, f"replay needs >= 1 pose and 0..{MAX_REPLAY_FRAMES} frames",
                                       msg.job, about=msg.kind))

        def work() -> Message:
            for i in range(count):
                job.control.checkpoint()
                self.conn.send(frame_message(job.id, "replay", i, i + 1, count, {}, verts[i % verts.shape[0]]))
                # as fast as the client takes them: at most one unsent frame, none dropped
                self.conn.wait_frame_slot(job.id)
            last = verts[(count - 1) % verts.shape[0]] if count else verts[0]
            return Message(schema.RESULT, job=job.id, fields={"meta": {"frames": count}}, buffers={"verts": last})

        return work

    def _fit_work(self, msg: Message, job: _Job):
        photos = []
        for entry in msg.fields["photos"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise _Reply(error_message(schema.E_BAD_MESSAGE, "each photo needs a name and a path or buffer",
                                           msg.job, about=msg.kind))
            if isinstance(entry.get("buffer"), str):
                data = msg.buffers.get(entry["buffer"])
                if data is None or data.dtype != np.uint8 or data.ndim != 1:
                    raise _Reply(error_message(schema.E_BAD_MESSAGE, f"photo {entry['name']!r}: buffer "
                                               f"{entry['buffer']!r} must be a (B,) uint8 array in this message",
                                               msg.job, about=msg.kind))
                photos.append(PhotoInput(entry["name"], data=data.tobytes()))
            elif isinstance(entry.get("path"), str):
                photos.append(PhotoInput(entry["name"], path=self._path(msg, entry["path"], "photo")))
            else:
                raise _Reply(error_message(schema.E_BAD_MESSAGE, f"photo {entry['name']!r} needs a path or a buffer",
                                           msg.job, about=msg.kind))
        template_id = msg.fields.get("template", DEFAULT_TEMPLATE)
        with self._lock:
            template = self.templates.get(template_id)
        if template is None and template_id != DEFAULT_TEMPLATE:
            raise _Reply(error_message(schema.E_UNKNOWN_JOB, f"no template {template_id!r} in this session; send it first",
                                       msg.job, about=msg.kind))
        if template is None:
            template = _default_template()
        job.num_verts = template.num_verts
        try:
            options = FitOptions.from_dict(msg.fields.get("options"))
            fit_job = FitJob(photos=photos, template=template, options=options, device=msg.fields.get("device", "cpu"))
        except ValueError as exc:
            raise _Reply(error_message(schema.E_BAD_MESSAGE, str(exc), msg.job, about=msg.kind)) from None
        opens_paths = options.cues is not None and (any(options.cues.normal_maps) or options.cues.weights is not None)
        if opens_paths and not self.conn.may_open_paths:
            # The files provider reads paths on this machine, and so do face prior weights other
            # than the shipped ones; neither travels inline (yet).
            raise _Reply(error_message(schema.E_BAD_MESSAGE, "this core does not open paths sent by clients, and "
                                       "normal maps and face prior weights travel only as paths; start the core "
                                       "with --allow-paths", msg.job, about=msg.kind))

        def work() -> Message:
            from core.fit.pipeline import run_fit  # seconds to import (detectors, renderer): only when a fit runs

            record, stage, sent = None, None, -math.inf
            for record in run_fit(fit_job, job.control):
                now = time.monotonic()
                # A frame costs a deformation and a copy off the device: stream at a viewer's rate.
                if record.stage != stage or now - sent >= 1.0 / FRAME_RATE_HZ:
                    stage, sent = record.stage, now
                    self.conn.send(frame_message(job.id, record.stage, record.iteration, record.step,
                                                 record.total_steps, record.losses, record.verts, record.camera))
                self.conn.send(Message(schema.PROGRESS, job=job.id, fields={
                    "stage": record.stage, "step": int(record.step), "total": int(record.total_steps)}))
            if record is None or record.result is None:
                raise RuntimeError("the fit ended without a result")
            return Message(schema.RESULT, job=job.id, fields={"meta": record.result.meta},
                           buffers=_wire_arrays(record.result.wire_arrays()))

        return work

    def _run(self, job: _Job, work) -> None:
        try:
            reply = work()
        except FitCancelled:
            reply = Message(schema.CANCELLED, job=job.id)
        except (PriorError, TemplateError) as exc:  # the client's input: its message, not our traceback
            reply = error_message(schema.E_BAD_MESSAGE, str(exc), job.id, about=schema.JOB)
        except Exception as exc:
            reply = error_message(schema.E_FAILED, f"{type(exc).__name__}: {exc}", job.id, traceback.format_exc())
        with self._lock:
            self.jobs.pop(job.id, None)
            self.finished.add(job.id)
        self.registry.remove(self.conn.session_id, job.id)
        self.conn.send(reply)


class _Reply(Exception):
    """Raised by a handler to answer the current message with ``reply`` (an error)."""

    def __init__(self, reply: Message):
        super().__init__(reply.fields.get("message", ""))
        self.reply = reply

