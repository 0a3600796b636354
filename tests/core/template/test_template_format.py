"""Template file format: round trip, deterministic bytes, and a clear error for each kind of bad file."""

import io
import json
import zipfile

import numpy as np
import pytest

from core.template import FORMAT_VERSION, Template, TemplateError, load, random_template
from core.template.model import MAX_TEMPLATE_BYTES


def arrays_equal(a: Template, b: Template) -> None:
    aa, am = a.to_arrays()
    ba, bm = b.to_arrays()
    assert am == bm
    assert sorted(aa) == sorted(ba)
    for k in aa:
        assert aa[k].dtype == ba[k].dtype, k
        np.testing.assert_array_equal(aa[k], ba[k], err_msg=k)


def test_round_trip_file_and_arrays(tmp_path):
    t = random_template(seed=5)
    path = tmp_path / "t.npz"
    t.save(path)
    arrays_equal(t, load(path))
    arrays, meta = t.to_arrays()
    meta = json.loads(json.dumps(meta))  # must survive JSON (the wire)
    arrays_equal(t, Template.from_arrays(arrays, meta))
    assert t.to_bytes() == random_template(seed=5).to_bytes()


def write_modified(path, t, change):
    arrays, meta = t.to_arrays()
    change(arrays, meta)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        for k, v in arrays.items():
            b = io.BytesIO()
            np.save(b, v)
            zf.writestr(k + ".npy", b.getvalue())
    path.write_bytes(buf.getvalue())
    return path


def _set(name, value):
    def change(arrays, meta):
        arrays[name] = value(arrays[name])
    return change


def _meta(key, value):
    def change(arrays, meta):
        meta[key] = value
    return change


def _nan(a):
    a = a.copy()
    a[1, 2] = np.nan
    return a


def _oob(a):
    a = a.copy()
    a[0] = 10_000
    return a


def _weights(a):
    a = a.copy()
    a[3] *= 0.5
    return a


def _cycle(a):
    a = a.copy()
    a[0] = 2  # root's parent becomes a descendant-or-other joint; 2's chain leads back to 0
    a[2] = 1
    a[1] = 0
    return a


BAD = [
    ("missing array", lambda a, m: a.pop("skin_w"), "missing array 'skin_w'"),
    ("wrong shape", _set("verts", lambda v: v[:, :2]), r"array 'verts' has shape \(32, 2\), expected \(N, 3\)"),
    ("NaN", _set("verts", _nan), r"'verts' has a non-finite value .* index \(1, 2\)"),
    ("index out of range", _set("tris", _oob), "'tris' has index 10000 out of range"),
    ("weights", _set("skin_w", _weights), "skinning weights of vertex 3 sum to"),
    ("cyclic parents", _set("joint_parents", _cycle), "joint parents are cyclic: j0 -> j2 -> j1 -> j0"),
    ("version", _meta("format_version", FORMAT_VERSION + 1), "format_version is 2; this build reads version 1"),
    ("mirror", _set("mirror", lambda m: np.zeros_like(m)), "'mirror' is not an involution"),
    ("parent order", _set("joint_parents", lambda p: np.array([-1, 2, 0, 0, 1, 1])), "listed before its parent"),
    ("two roots", _set("joint_parents", lambda p: np.array([-1, -1, 0, 0, 1, 1])), "exactly one root, found 2"),
    ("rotation", _set("joint_rest", lambda r: r * np.float32(1.1)), "is not a rotation"),
    ("wrong dtype", _set("poly_verts", lambda p: p.astype(np.float32)), "'poly_verts' has dtype float32, expected int64"),
    ("region out of range", _set("region.face_mask", _oob), "'region.face_mask' has index 10000"),
    ("region missing", lambda a, m: a.pop("region.face_mask"), "missing array 'region.face_mask'"),
    ("bad barycentrics", _set("lmk_bary", lambda b: b * 2), "barycentrics of landmark 0 sum to 2"),
    ("names not a list", _meta("joint_names", "j0"), "'joint_names' must be a list of strings"),
]


@pytest.mark.parametrize("what,change,message", BAD, ids=[b[0] for b in BAD])
def test_bad_file_names_the_problem(tmp_path, what, change, message):
    path = write_modified(tmp_path / "bad.npz", random_template(), change)
    with pytest.raises(TemplateError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_not_a_zip_or_no_meta(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"hello")
    with pytest.raises(TemplateError, match="not a template file"):
        load(p)
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("verts.npy", b"")
    with pytest.raises(TemplateError, match="has no meta.json"):
        load(p)


def test_a_member_packed_by_another_zip_method_is_refused_by_name(tmp_path):
    p = tmp_path / "packed.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("meta.json", b"{}")
    with pytest.raises(TemplateError, match=r"packed.npz: members are compressed with zip method 12; a template "
                                            r"stores them plain or deflated") as info:
        load(p)
    assert "\n" not in str(info.value)


def test_devices_folders_and_zip_bombs_are_refused_unread(tmp_path):
    with pytest.raises(TemplateError, match="'/dev/zero' is not a regular file"):
        load("/dev/zero")
    with pytest.raises(TemplateError, match="is a folder"):
        load(tmp_path)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("verts.npy", bytes(MAX_TEMPLATE_BYTES + 1))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(TemplateError, match="unpack to .* above the template limit"):
        load(bomb)


def test_a_member_that_lies_about_its_size_is_never_inflated_past_it(tmp_path):
    import struct
    import tracemalloc

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", b"{}")
        zf.writestr("verts.npy", bytes(256 << 20))  # 256 MiB of zeros in 256 kB
    data = bytearray(buf.getvalue())
    local = data.index(b"PK\x03\x04", 1)  # verts.npy's local and central headers
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 1 << 20)  # declares 1 MiB
    struct.pack_into("<I", data, central + 24, 1 << 20)
    liar = tmp_path / "liar.npz"
    liar.write_bytes(bytes(data))
    tracemalloc.start()
    with pytest.raises(TemplateError, match="not a template file"):
        load(liar)
    assert tracemalloc.get_traced_memory()[1] < 16 << 20
    tracemalloc.stop()


def test_an_npy_header_that_claims_more_than_its_bytes_is_refused(tmp_path):
    arrays, meta = random_template(seed=2).to_arrays()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)})
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        for name, arr in arrays.items():
            body = io.BytesIO()
            np.save(body, arr)
            zf.writestr(f"{name}.npy", header.getvalue() + bytes(12) if name == "verts" else body.getvalue())
    with pytest.raises(TemplateError, match="bytes of data for shape"):
        load(tmp_path / "big.npz")


def test_crc_broken_member_is_one_line_error(tmp_path):
    data = bytearray(random_template(seed=2).to_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stored: the flipped byte reaches the CRC check
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as src:
            for info in src.infolist():
                zf.writestr(info.filename, src.read(info))
    raw = bytearray(buf.getvalue())
    at = raw.index(b"\x93NUMPY") + 200  # inside the first array
    raw[at] ^= 0xFF
    path = tmp_path / "crc.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(TemplateError) as err:
        load(path)
    assert "crc.npz: not a template file (Bad CRC-32" in str(err.value) and "\n" not in str(err.value)
