"""Wire format: round trips, limits, and thousands of malformed frames (hypothesis)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import schema
from bridge.protocol import (
    DTYPES,
    FramingError,
    Message,
    ProtocolError,
    decode,
    decode_frame,
    encode,
    read_message,
)

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _frame(header: dict, body: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    payload = struct.pack(">I", len(h)) + h
    payload += b"\0" * (-(len(payload) + 4) % 8) + body
    return struct.pack(">I", len(payload)) + payload


def test_round_trip_all_dtypes_and_shapes():
    rng = np.random.default_rng(0)
    buffers = {}
    for name, dt in DTYPES.items():
        if name == "bool":
            buffers[name] = rng.integers(0, 2, size=(3, 5)).astype(bool)
        else:
            buffers[name] = (rng.normal(size=(2, 3, 1)) * 100).astype(dt)
    buffers["empty"] = np.zeros((0, 3), np.float32)
    buffers["scalar"] = np.array(7, np.int64)
    buffers["odd"] = np.arange(5, dtype=np.uint8)  # forces padding of the next buffer
    buffers["after_odd"] = np.arange(3, dtype=np.float64)
    buffers["big_endian"] = np.arange(4, dtype=">f4")
    buffers["strided"] = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    msg = Message("frame", job="j1", fields={"stage": "rig", "nested": {"a": [1, 2.5, None]}}, buffers=buffers)
    data = encode(msg)
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4
    out = decode_frame(bytearray(data))
    assert (out.kind, out.job, out.fields) == (msg.kind, msg.job, msg.fields)
    assert list(out.buffers) == list(buffers)
    for name, arr in buffers.items():
        got = out.buffers[name]
        np.testing.assert_array_equal(got, arr)
        assert got.shape == arr.shape
        assert got.dtype.newbyteorder("=") == arr.dtype.newbyteorder("=")
        assert got.flags.aligned, name


def test_decoded_arrays_are_views_of_the_received_bytes():
    verts = np.arange(30, dtype=np.float32).reshape(10, 3)
    frame = bytearray(encode(Message("frame", "j", buffers={"verts": verts})))
    out = decode(memoryview(frame)[4:])
    assert out.buffers["verts"].flags.writeable
    out.buffers["verts"][0, 0] = 99.0
    assert decode_frame(frame).buffers["verts"][0, 0] == 99.0


def test_unknown_header_keys_and_kinds_are_ignored():
    msg = decode_frame(_frame({"protocol": "1.7", "kind": "teleport", "job": None, "fields": {}, "buffers": [], "extra": 1}))
    assert msg.kind == "teleport"
    assert schema.validate(msg) is False
    frame = Message("frame", "j", fields={"stage": "s", "iteration": 1, "step": 1, "total": 2, "future": {"x": 1}},
                    buffers={"verts": np.zeros((4, 3), np.float32)})
    assert schema.validate(decode_frame(encode(frame))) is True


@pytest.mark.parametrize(
    "header, body, match",
    [
        ({"protocol": "2.0", "kind": "bye"}, b"", "protocol"),
        ({"protocol": "1.0"}, b"", "kind"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "object", "shape": [1]}]}, b"\0" * 8, "dtype"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "<f4", "shape": [1]}]}, b"\0" * 8, "dtype"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "float32", "shape": [3]}]}, b"\0" * 8, "bytes"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "float32", "shape": [1]}]}, b"\0" * 16, "bytes"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "float32", "shape": [-1]}]}, b"", "shape"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "float32", "shape": [True]}]}, b"\0" * 8, "shape"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "float32", "shape": [10**30]}]}, b"", "bytes"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "bool", "shape": [2]}]}, b"\1\2" + b"\0" * 6, "bool"),
        ({"protocol": "1.0", "kind": "x", "buffers": [{"name": "a", "dtype": "uint8", "shape": [1]}] * 2}, b"\0" * 16, "twice"),
        ({"protocol": "1.0", "kind": "x", "fields": [1, 2]}, b"", "fields"),
        ({"protocol": "1.0", "kind": "x", "job": 5}, b"", "job"),
    ],
)
def test_malformed_headers_are_rejected_with_a_reason(header, body, match):
    with pytest.raises(ProtocolError, match=match):
        decode_frame(_frame(header, body))


def test_bad_json_and_bad_utf8():
    for raw in (b"{not json", b"\xff\xfe", b"[" * 100_000, b"1e999999", b'"' + b"9" * 10 + b'"'):
        payload = struct.pack(">I", len(raw)) + raw
        with pytest.raises(ProtocolError):
            decode(payload)


def test_encode_refuses_what_cannot_travel():
    with pytest.raises(ProtocolError, match="dtype"):
        encode(Message("x", buffers={"a": np.array(["s"], dtype=object)}))
    with pytest.raises(ProtocolError, match="dtype"):
        encode(Message("x", buffers={"a": np.zeros(2, np.float16)}))
    with pytest.raises(ProtocolError, match="JSON"):
        encode(Message("x", fields={"a": object()}))
    with pytest.raises(ProtocolError, match="limit"):
        encode(Message("x", buffers={"a": np.zeros(1000, np.float32)}), max_bytes=1000)


def test_read_message_limits_and_truncation():
    data = encode(Message("frame", "j", buffers={"verts": np.zeros((100, 3), np.float32)}))
    assert read_message(io.BytesIO(data)).kind == "frame"
    assert read_message(io.BytesIO(b"")) is None
    with pytest.raises(FramingError, match="limit"):
        read_message(io.BytesIO(data), max_bytes=100)  # refused from the prefix alone
    with pytest.raises(FramingError, match="limit"):
        read_message(io.BytesIO(struct.pack(">I", 0xFFFFFFFF)))
    for cut in (2, 4, 10, len(data) - 1):
        with pytest.raises(FramingError):
            read_message(io.BytesIO(data[:cut]))
    # two frames back to back stay in sync
    stream = io.BytesIO(data + encode(Message("bye")))
    assert read_message(stream).kind == "frame" and read_message(stream).kind == "bye"
    assert read_message(stream) is None


def test_schema_checks_fields_and_arrays():
    ok = Message("pin", "j", buffers={"ids": np.arange(3), "targets": np.zeros((3, 3), np.float32)})
    assert schema.validate(ok)
    cases = [
        (Message("pin", "j", buffers={"ids": np.arange(3), "targets": np.zeros((2, 3), np.float32)}), "axis 0"),
        (Message("pin", "j", buffers={"ids": np.arange(3).astype(np.int32), "targets": np.zeros((3, 3), np.float32)}), "int64"),
        (Message("pin", None, buffers={"ids": np.arange(3), "targets": np.zeros((3, 3), np.float32)}), "job id"),
        (Message("frame", "j", fields={"stage": "s", "iteration": True, "step": 0, "total": 1},
                 buffers={"verts": np.zeros((2, 3), np.float32)}), "iteration"),
        (Message("frame", "j", fields={"stage": "s", "iteration": 0, "step": 0, "total": 1},
                 buffers={"verts": np.zeros((2, 4), np.float32)}), "axis 1"),
        (Message("job", "j", fields={"type": "dance"}), "unknown type"),
        (Message("job", "j", fields={"type": "replay"}), "verts"),
        (Message("error", fields={"message": "m"}), "code"),
    ]
    for msg, match in cases:
        with pytest.raises(schema.SchemaError, match=match):
            schema.validate(decode_frame(encode(msg)))


# -- property-based: the decoder only ever returns a Message or raises ProtocolError ----

def _decode_any(data: bytes):
    try:
        msg = decode_frame(data)
    except ProtocolError:
        return None
    try:
        schema.validate(msg)
    except ProtocolError:
        pass
    return msg


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    _decode_any(data)
    try:
        read_message(io.BytesIO(data), max_bytes=1 << 16)
    except ProtocolError:
        pass


_VALID = [
    encode(Message("frame", "j", fields={"stage": "rig", "iteration": 3, "step": 4, "total": 9, "losses": {"lmk": 0.5}},
                   buffers={"verts": np.ones((5, 3), np.float32)})),
    encode(Message("pin", "j", fields={"weight": 2.0}, buffers={"ids": np.arange(2), "targets": np.ones((2, 3), np.float32)})),
    encode(Message("hello", fields={"protocol": "1.0", "token": "abc"})),
    encode(Message("job", "j", fields={"type": "replay", "count": 3}, buffers={"verts": np.ones((1, 2, 3), np.float32)})),
]


@FUZZ
@given(st.sampled_from(_VALID), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       st.integers(0, 10_000), st.binary(max_size=16))
def test_fuzz_mutated_valid_frames(frame, flips, cut, tail):
    data = bytearray(frame)
    for pos, value in flips:
        data[pos % len(data)] = value
    _decode_any(bytes(data[: max(cut % (len(data) + 1), 0)]) + tail)
    _decode_any(bytes(data))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
_buffer_spec = st.fixed_dictionaries(
    {"name": st.text(max_size=4) | st.integers(), "dtype": st.sampled_from([*DTYPES, "<f4", "O", "float16", 3]),
     "shape": st.lists(st.integers(-2, 6), max_size=3) | _json}
)
_header = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["1.0", "1.9", "0.1", "x", 1]),
     "kind": st.sampled_from([*schema.SPECS, "zzz", "", 4]),
     "job": st.none() | st.text(max_size=3) | st.integers()},
    optional={"fields": _json, "buffers": st.lists(_buffer_spec, max_size=3) | _json, "more": _json},
)


@settings(FUZZ, max_examples=800)
@given(_header, st.binary(max_size=200))
def test_fuzz_structured_headers(header, body):
    msg = _decode_any(_frame(header, body))
    if msg is not None:
        assert isinstance(msg.kind, str) and isinstance(msg.fields, dict)
