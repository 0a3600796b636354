"""Message kinds of protocol 1.x and the fields and arrays each one carries.

Client → core: hello, template, get_template, job, pin, pause, resume, cancel,
status, bye. Core → client: hello, template, frame, progress, result,
cancelled, error, status, bye.

- ``hello``     {protocol, token?, software?}: the first message each way. The
                client's carries the token; the core answers with its own
                hello ({protocol, software, session, pid}) or an error and closes.
- ``template``  a rig template (``bridge.template.TemplateMessage``) inline, or
                {path} naming a template file on the core's machine; ``job``
                is the id under which jobs refer to it. Answered by ``status``
                {template: id, verts: N} or an error.
- ``get_template`` {name}: ask the core for a template ("default"); answered
                by a ``template`` message with the same ``job`` id.
- ``job``       {type: "fit" | "replay", ...}; ``job`` is the new job's id.
                fit: {photos: [{name, path} | {name, buffer}], template?, options?,
                device?}, inline photo bytes in uint8 buffers named by ``buffer``.
                replay: buffer ``verts`` (T, N, 3) float32, {count?}: streams
                ``count`` frames cycling through the T poses, each sent as soon as
                the previous one left the core.
- ``frame``     {stage, iteration, step, total, losses, t_emit, width?, height?},
                optional buffers K (3,3), R (3,3), t (3,) (the first view's
                current camera, OpenCV convention); buffer
                ``verts`` (N, 3) float32. Conflated: only the newest unsent
                frame per job is kept.
- ``progress``  {stage, step, total, message?}; conflated like frames.
- ``pin``       buffers ``ids`` (P,) int64, ``targets`` (P, 3) float32,
                {weight?}; P = 0 clears the pins.
- ``pause`` / ``resume`` / ``cancel``: take effect within one iteration.
                Cancel is always answered: ``cancelled``, or an error with
                code ``unknown_job`` / ``job_finished``.
- ``result``    {meta}, buffers: the result arrays (``verts`` etc.).
- ``cancelled`` the job stopped on request.
- ``error``     {code, message, traceback?, about?}; ``job`` when it concerns
                one; ``about`` names the kind of the message that caused it. An
                error about a control message (pin/pause/resume/cancel) does
                not end the job; any other error with a job id does.
- ``status``    (request: no fields) → {sessions, jobs: [{id, type, state}]}.
- ``bye``       orderly close.

Kinds not listed here and fields not listed in a spec are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .protocol import Message, ProtocolError, wire_dtype

HELLO = "hello"
TEMPLATE = "template"
GET_TEMPLATE = "get_template"
JOB = "job"
FRAME = "frame"
PROGRESS = "progress"
PIN = "pin"
PAUSE = "pause"
RESUME = "resume"
CANCEL = "cancel"
RESULT = "result"
CANCELLED = "cancelled"
ERROR = "error"
STATUS = "status"
BYE = "bye"

# Kinds that end a job: exactly one of them is sent per job.
FINAL_KINDS = frozenset({RESULT, CANCELLED, ERROR})
# Messages that steer a running job; an error about one of them leaves the job running.
CONTROL_KINDS = frozenset({PIN, PAUSE, RESUME, CANCEL})
# Kinds of which only the newest unsent one per job is kept in the outbound queue.
CONFLATED_KINDS = frozenset({FRAME, PROGRESS})

# Error codes sent in ``error`` messages.
E_AUTH = "auth"
E_PROTOCOL = "protocol"
E_BAD_MESSAGE = "bad_message"
E_UNKNOWN_JOB = "unknown_job"
E_JOB_FINISHED = "job_finished"
E_DUPLICATE_JOB = "duplicate_job"
E_FAILED = "failed"
E_UNAVAILABLE = "unavailable"


class SchemaError(ProtocolError):
    """A decodable message whose fields or arrays do not match its kind."""


_NUMBER = (int, float)


@dataclass(frozen=True)
class ArraySpec:
    """dtype: allowed wire dtype names; shape: ints, or symbol strings that
    must agree across the arrays of one message, or None for any size."""

    dtypes: tuple[str, ...]
    shape: tuple


@dataclass(frozen=True)
class KindSpec:
    needs_job: bool = False
    required: dict = field(default_factory=dict)  # name -> type or tuple of types
    optional: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)  # name -> ArraySpec
    optional_arrays: tuple = ()  # names in ``arrays`` that may be absent


SPECS: dict[str, KindSpec] = {
    HELLO: KindSpec(required={"protocol": str}, optional={"token": str, "software": str, "session": str, "pid": int}),
    TEMPLATE: KindSpec(needs_job=True, optional={"path": str, "meta": dict}),
    GET_TEMPLATE: KindSpec(needs_job=True, required={"name": str}),
    JOB: KindSpec(needs_job=True, required={"type": str}),
    FRAME: KindSpec(
        needs_job=True,
        required={"stage": str, "iteration": int, "step": int, "total": int},
        optional={"losses": dict, "t_emit": _NUMBER, "width": int, "height": int},
        arrays={"verts": ArraySpec(("float32",), (None, 3)),
                "K": ArraySpec(("float32", "float64"), (3, 3)),
                "R": ArraySpec(("float32", "float64"), (3, 3)),
                "t": ArraySpec(("float32", "float64"), (3,))},
        optional_arrays=("K", "R", "t"),
    ),
    PROGRESS: KindSpec(
        needs_job=True, required={"stage": str, "step": int, "total": int}, optional={"message": str}
    ),
    PIN: KindSpec(
        needs_job=True,
        optional={"weight": _NUMBER},
        arrays={"ids": ArraySpec(("int64",), ("P",)), "targets": ArraySpec(("float32",), ("P", 3))},
    ),
    PAUSE: KindSpec(needs_job=True),
    RESUME: KindSpec(needs_job=True),
    CANCEL: KindSpec(needs_job=True),
    RESULT: KindSpec(needs_job=True, optional={"meta": dict}),
    CANCELLED: KindSpec(needs_job=True),
    ERROR: KindSpec(required={"code": str, "message": str}, optional={"traceback": str, "about": str}),
    STATUS: KindSpec(),
    BYE: KindSpec(),
}

# Job types and their extra requirements (checked on top of SPECS[JOB]).
JOB_FIT = "fit"
JOB_REPLAY = "replay"
JOB_SPECS: dict[str, KindSpec] = {
    JOB_FIT: KindSpec(required={"photos": list}, optional={"template": str, "options": dict, "device": str}),
    JOB_REPLAY: KindSpec(
        optional={"count": int},
        arrays={"verts": ArraySpec(("float32",), (None, None, 3))},
    ),
}


def ends_job(msg: Message) -> bool:
    """Whether ``msg`` is the final message of its job."""
    if msg.kind == ERROR:
        return msg.fields.get("about") not in CONTROL_KINDS
    return msg.kind in FINAL_KINDS


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,)))


def _check_fields(kind: str, fields: dict, spec: KindSpec) -> None:
    for name, t in spec.required.items():
        if name not in fields:
            raise SchemaError(f"{kind}: missing field {name!r}")
    for name, t in (*spec.required.items(), *spec.optional.items()):
        if name in fields:
            value = fields[name]
            # bool is an int in Python but never a valid number here
            if isinstance(value, bool) or not isinstance(value, t):
                raise SchemaError(f"{kind}: field {name!r} must be {_type_name(t)}, got {type(value).__name__}")


def check_arrays(kind: str, buffers: dict[str, np.ndarray], arrays: dict[str, ArraySpec], optional=()) -> dict:
    """Check dtypes and shapes; returns the symbol bindings (e.g. {"P": 12})."""
    sizes: dict[str, int] = {}
    for name, spec in arrays.items():
        if name not in buffers:
            if name in optional:
                continue
            raise SchemaError(f"{kind}: missing array {name!r}")
        arr = buffers[name]
        dname = wire_dtype(arr)
        if dname not in spec.dtypes:
            raise SchemaError(f"{kind}: array {name!r} must be {'/'.join(spec.dtypes)}, got {dname}")
        if arr.ndim != len(spec.shape):
            raise SchemaError(f"{kind}: array {name!r} must have {len(spec.shape)} dimensions, got shape {arr.shape}")
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int) and want != got:
                raise SchemaError(f"{kind}: array {name!r} has shape {arr.shape}; axis {axis} must be {want}")
            if isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    raise SchemaError(
                        f"{kind}: array {name!r} has shape {arr.shape}; axis {axis} must be {sizes[want]} ({want})"
                    )
    return sizes


def validate(msg: Message) -> bool:
    """Check ``msg`` against its kind's spec. Returns False for unknown kinds
    (to be ignored), True when valid; raises SchemaError otherwise."""
    spec = SPECS.get(msg.kind)
    if spec is None:
        return False
    if spec.needs_job and msg.job is None:
        raise SchemaError(f"{msg.kind}: a job id is required")
    _check_fields(msg.kind, msg.fields, spec)
    check_arrays(msg.kind, msg.buffers, spec.arrays, spec.optional_arrays)
    if msg.kind == JOB:
        jspec = JOB_SPECS.get(msg.fields["type"])
        if jspec is None:
            raise SchemaError(f"job: unknown type {msg.fields['type']!r:.40}; known: {sorted(JOB_SPECS)}")
        _check_fields(f"{msg.fields['type']} job", msg.fields, jspec)
        check_arrays(f"{msg.fields['type']} job", msg.buffers, jspec.arrays)
    return True


def parse_version(text: str) -> tuple[int, int]:
    """'MAJOR.MINOR' -> (major, minor); SchemaError when malformed."""
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise SchemaError(f"protocol version must look like MAJOR.MINOR, got {text!r:.40}")
    return int(parts[0]), int(parts[1])
