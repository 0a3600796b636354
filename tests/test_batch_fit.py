"""scripts/batch_fit.py under the bpy module: one real photo fitted, a broken file and a face-less
image reported; .blend, .glb and summary.json written; non-zero exit when a photo failed."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np

from conftest import REPO

PHOTO = os.path.join(os.path.dirname(np.__file__), "..", "matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")


def _glb_json(path) -> dict:
    data = path.read_bytes()
    assert data[:4] == b"glTF"
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20:20 + length])


def test_batch_fits_photos_and_reports_failures(tmp_path):
    from PIL import Image

    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    shutil.copy(PHOTO, photos / "grace.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(photos / "noise.png")
    (photos / "notes.txt").write_text("ignored")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "batch_fit.py"), "--photos", str(photos),
                           "--out", str(out), "--preset", "draft", "--iterations", "rig=5,joint=2,vertex=2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[2/3] grace.jpg: ok" in proc.stdout
    assert "done: 1 fitted, 2 failed" in proc.stdout
    assert "FAILED broken.jpg: ImageError" in proc.stdout and "FAILED noise.png: NoFaceError" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (1, 2)
    rows = {r["photo"]: r for r in summary["photos"]}
    assert rows["grace.jpg"]["status"] == "ok" and rows["grace.jpg"]["landmark_error_iod"] < 0.2
    assert rows["noise.png"]["status"] == "failed" and "face" in rows["noise.png"]["error"]
    assert summary["options"]["schedule"]["stages"]["rig"] == {"iterations": 5}
    assert sorted(p.name for p in out.iterdir()) == ["grace.blend", "grace.glb", "summary.json"]

    gltf = _glb_json(out / "grace.glb")
    assert len(gltf["meshes"]) == 2 and gltf["skins"]
    head = next(m for m in gltf["meshes"] if "targetNames" in m.get("extras", {}))
    assert len(head["extras"]["targetNames"]) == 52

    check = textwrap.dedent(f"""
        import json, bpy
        bpy.ops.wm.open_mainfile(filepath={str(out / 'grace.blend')!r})
        head = next(o for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys)
        arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
        print(json.dumps({{"verts": len(head.data.vertices), "keys": len(head.data.shape_keys.key_blocks),
                          "bones": len(arm.data.bones), "bound": head.modifiers[0].object == arm,
                          "groups": len(head.vertex_groups), "uv": len(head.data.uv_layers)}}))
    """)
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["keys"] == 53 and info["bound"] and info["uv"] == 1 and info["bones"] > 10
    assert info["verts"] > 4000 and info["groups"] == info["bones"]


def test_batch_refuses_a_folder_without_photos(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "batch_fit.py"), "--photos", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no photos" in proc.stderr
