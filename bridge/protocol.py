"""Framing and encoding of bridge messages.

A frame on the wire::

    uint32 BE  total      bytes that follow this field (header length + header + buffers)
    uint32 BE  hlen       bytes of the JSON header
    hlen bytes            UTF-8 JSON object: {"protocol", "kind", "job", "fields", "buffers"}
    buffers               raw little-endian arrays, in the order "buffers" lists them

The buffer section starts at the first multiple of 8 at or after the header's
end, counted from the frame's first byte, and each buffer is padded with zeros
to a multiple of 8 bytes, so decoded arrays are aligned views into the
received frame (no copy). ``"buffers"`` is a list of ``{"name", "dtype",
"shape"}`` with dtypes from :data:`DTYPES` only; the header's byte count must
match the declared shapes exactly. Unknown header keys are ignored. Nothing
here ever evaluates or unpickles data.

Versioning: ``"protocol"`` is MAJOR.MINOR. Peers of the same MAJOR talk;
a MINOR bump may only add kinds, fields or arrays, which older peers ignore.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
PROTOCOL_VERSION = f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"

# A 24k-vertex template with weights, controller deltas and UVs is ~40 MB;
# results are smaller. Anything larger is refused before it is read.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024
# Before the handshake a peer may only send a small hello.
MAX_HELLO_BYTES = 64 * 1024
MAX_NAME_CHARS = 128
# A message is received this many bytes at a time.
READ_CHUNK_BYTES = 1024 * 1024
MAX_NDIM = 8
ALIGN = 8

# Wire dtype name -> little-endian numpy dtype. Nothing else is accepted.
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "int16": np.dtype("<i2"),
    "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"),
    "uint32": np.dtype("<u4"),
    "int64": np.dtype("<i8"),
    "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),  # decoded only if every byte is 0 or 1
}
_WIRE_NAME = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}
_BOOL = DTYPES["bool"]

_U32 = struct.Struct(">I")


class ProtocolError(Exception):
    """A message that cannot be decoded or does not fit the schema.

    The stream is still in sync (the whole frame was read): the receiver may
    answer with an error and go on.
    """


class FramingError(ProtocolError):
    """The byte stream itself is broken (oversized length, truncated frame):
    the connection must be closed."""


@dataclass
class Message:
    """One bridge message.

    kind: message kind (see ``bridge.schema``); job: the job id it concerns
    (or None); fields: JSON-able values; buffers: name -> numpy array of a
    :data:`DTYPES` dtype. ``received`` is the local ``time.monotonic()`` at
    which the receiver decoded it (0 for messages built locally); it never
    travels.
    """

    kind: str
    job: str | None = None
    fields: dict = field(default_factory=dict)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    received: float = field(default=0.0, compare=False)


def wire_dtype(array: np.ndarray) -> str:
    """The wire name of ``array``'s dtype, or ProtocolError if it cannot travel."""
    dt = array.dtype
    name = _WIRE_NAME.get((dt.kind, dt.itemsize)) if dt.kind in "iufb" else None
    if name is None:
        raise ProtocolError(f"dtype {dt} cannot travel; use one of {sorted(DTYPES)}")
    return name


def _pad(n: int) -> int:
    return -n % ALIGN


def encode(msg: Message, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """The complete frame (length prefix included) for ``msg``."""
    if not isinstance(msg.kind, str) or not msg.kind:
        raise ProtocolError("message kind must be a non-empty string")
    specs, arrays = [], []
    for name, value in msg.buffers.items():
        arr = np.asarray(value)
        wname = wire_dtype(arr)
        arr = arr.astype(DTYPES[wname], order="C", copy=False)  # ascontiguousarray would make 0-d arrays 1-d
        specs.append({"name": name, "dtype": wname, "shape": list(arr.shape)})
        arrays.append(arr)
    header = {
        "protocol": PROTOCOL_VERSION,
        "kind": msg.kind,
        "job": msg.job,
        "fields": msg.fields,
        "buffers": specs,
    }
    try:
        hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{msg.kind}: fields are not JSON-able: {exc}") from None
    hbytes += b" " * _pad(len(hbytes))  # JSON allows trailing spaces
    if len(hbytes) > MAX_HEADER_BYTES:
        raise ProtocolError(f"{msg.kind}: header of {len(hbytes)} bytes exceeds {MAX_HEADER_BYTES}")
    parts = [b"", _U32.pack(len(hbytes)), hbytes]
    total = 4 + len(hbytes)
    for arr in arrays:
        raw = arr.reshape(-1).view(np.uint8)
        parts.append(raw)
        parts.append(b"\0" * _pad(raw.nbytes))
        total += raw.nbytes + _pad(raw.nbytes)
    if total > max_bytes:
        raise ProtocolError(f"{msg.kind}: message of {total} bytes exceeds the limit of {max_bytes}")
    parts[0] = _U32.pack(total)
    return b"".join(parts)


def _check_name(value, what: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ProtocolError(f"{what} must be a string of 1..{MAX_NAME_CHARS} characters, got {value!r:.80}")


def decode(payload, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode the bytes after the length prefix into a Message.

    payload: bytes, bytearray or memoryview. Arrays are views into ``payload``
    (writable when it is writable; aligned when ``payload`` starts 4 bytes
    after an 8-aligned address, as in a whole received frame). Raises
    ProtocolError on any defect.
    """
    view = memoryview(payload).cast("B")
    n = view.nbytes
    if n > max_bytes:
        raise ProtocolError(f"message of {n} bytes exceeds the limit of {max_bytes}")
    if n < 4:
        raise ProtocolError(f"message of {n} bytes is shorter than its header length field")
    (hlen,) = _U32.unpack_from(view, 0)
    if hlen > MAX_HEADER_BYTES or 4 + hlen > n:
        raise ProtocolError(f"header length {hlen} does not fit a message of {n} bytes")
    try:
        header = json.loads(bytes(view[4 : 4 + hlen]).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(f"header is not valid UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    version = header.get("protocol")
    if not isinstance(version, str) or version.split(".")[0] != str(PROTOCOL_MAJOR):
        raise ProtocolError(f"protocol {version!r:.40} is not {PROTOCOL_MAJOR}.x")
    kind, job = header.get("kind"), header.get("job")
    _check_name(kind, "kind")
    _check_name(job, "job", allow_none=True)
    fields = header.get("fields", {})
    if not isinstance(fields, dict):
        raise ProtocolError(f"{kind}: fields must be a JSON object")
    specs = header.get("buffers", [])
    if not isinstance(specs, list):
        raise ProtocolError(f"{kind}: buffers must be a list")
    buffers: dict[str, np.ndarray] = {}
    offset = 4 + hlen + _pad(hlen)  # frame offset 8 + hlen + pad: a multiple of 8
    for spec in specs:
        if not isinstance(spec, dict):
            raise ProtocolError(f"{kind}: each buffer must be described by an object")
        name, dname, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        _check_name(name, f"{kind}: buffer name")
        if name in buffers:
            raise ProtocolError(f"{kind}: buffer {name!r} is declared twice")
        if not isinstance(dname, str) or dname not in DTYPES:
            raise ProtocolError(f"{kind}: buffer {name!r} has dtype {dname!r:.40}; allowed: {sorted(DTYPES)}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise ProtocolError(f"{kind}: buffer {name!r} shape must be a list of at most {MAX_NDIM} ints >= 0")
        dtype = DTYPES[dname]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if offset + nbytes > n:
            raise ProtocolError(
                f"{kind}: buffer {name!r} {dname}{tuple(shape)} needs {nbytes} bytes but only {max(n - offset, 0)} remain"
            )
        if dtype == _BOOL:
            raw = np.frombuffer(view, dtype=np.uint8, count=count, offset=offset)
            if count and raw.max() > 1:
                raise ProtocolError(f"{kind}: bool buffer {name!r} holds bytes other than 0 and 1")
            buffers[name] = raw.view(_BOOL).reshape(tuple(shape))
        else:
            buffers[name] = np.frombuffer(view, dtype=dtype, count=count, offset=offset).reshape(tuple(shape))
        offset += nbytes + _pad(nbytes)
    if offset != n:
        raise ProtocolError(f"{kind}: declared buffers take {offset} bytes but the message has {n}")
    return Message(kind=kind, job=job, fields=fields, buffers=buffers)


def decode_frame(frame, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode a complete frame (length prefix included), e.g. the output of :func:`encode`."""
    view = memoryview(frame).cast("B")
    if view.nbytes < 4:
        raise FramingError("frame shorter than its length prefix")
    (total,) = _U32.unpack_from(view, 0)
    if total != view.nbytes - 4:
        raise FramingError(f"length prefix says {total} bytes, frame has {view.nbytes - 4}")
    return decode(view[4:], max_bytes)


def _read_into(stream, buf: memoryview) -> int:
    got = 0
    while got < buf.nbytes:
        n = stream.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def read_message(stream, max_bytes: int = MAX_MESSAGE_BYTES) -> Message | None:
    """Read and decode one frame from a binary stream (``sock.makefile("rb")``).

    Returns None on a clean end of stream between frames. Raises FramingError
    for an oversized length or a frame cut short (close the connection), and
    ProtocolError for a complete frame whose content is bad (the stream is
    still usable).
    """
    prefix = bytearray(4)
    got = _read_into(stream, memoryview(prefix))
    if got == 0:
        return None
    if got < 4:
        raise FramingError("connection closed inside a length prefix")
    (total,) = _U32.unpack(prefix)
    if total > max_bytes:
        raise FramingError(f"peer announced {total} bytes, more than the limit of {max_bytes}")
    # The frame grows as bytes arrive (a chunk at a time), so a length prefix
    # alone never makes the receiver allocate; the prefix is kept in front so
    # buffers are 8-aligned in memory.
    frame = bytearray(prefix)
    while len(frame) - 4 < total:
        chunk = stream.read(min(total - (len(frame) - 4), READ_CHUNK_BYTES))
        if not chunk:
            raise FramingError(f"connection closed inside a {total}-byte message")
        frame += chunk
    return decode(memoryview(frame)[4:], max_bytes)
