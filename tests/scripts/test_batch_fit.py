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

from conftest import GRACE_HOPPER, REPO, point_set_distance, probe_in_blender

from bridge.template import ARKIT_EXPRESSIONS

PHOTO = str(GRACE_HOPPER)


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
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (1, 2, 0)
    assert {"photo", "status", "seconds", "error", "out"} <= set(summary["photos"][0])  # likeness batch's keys
    rows = {r["photo"]: r for r in summary["photos"]}
    assert rows["grace.jpg"]["status"] == "ok" and rows["grace.jpg"]["landmark_error_iod"] < 0.2
    assert rows["noise.png"]["status"] == "failed" and "face" in rows["noise.png"]["error"]
    assert summary["options"]["schedule"]["stages"]["rig"] == {"iterations": 5}
    assert sorted(p.name for p in out.iterdir()) == ["grace.blend", "grace.glb", "summary.json"]

    gltf = _glb_json(out / "grace.glb")
    assert len(gltf["meshes"]) == 2 and gltf["skins"]
    names = [n for m in gltf["meshes"] for n in m.get("extras", {}).get("targetNames", [])]
    assert set(names) == set(ARKIT_EXPRESSIONS)
    assert all(w == 0 for m in gltf["meshes"] for w in m.get("weights", []))

    check = textwrap.dedent(f"""
        import json, bpy
        bpy.ops.wm.open_mainfile(filepath={str(out / 'grace.blend')!r})
        head = max((o for o in bpy.data.objects if o.type == "MESH"), key=lambda o: len(o.data.vertices))
        arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
        print(json.dumps({{"verts": len(head.data.vertices), "keys": len(head.data.shape_keys.key_blocks),
                          "bones": len(arm.data.bones), "bound": head.modifiers[0].object == arm,
                          "groups": len(head.vertex_groups), "uv": len(head.data.uv_layers)}}))
    """)
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["keys"] == 53 and info["bound"] and info["uv"] == 1 and info["bones"] > 10  # Basis + 52 sliders
    assert info["verts"] > 4000 and info["groups"] == info["bones"]


def test_batch_refuses_a_folder_without_photos(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "batch_fit.py"), "--photos", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no photos" in proc.stderr


def test_batch_through_a_core_process_with_relative_paths_writes_files_that_agree(tmp_path):
    """The core runs in another folder: relative paths still work. Every file opens at rest with the
    same objects: head, eyes/teeth/tongue, armature, all skin influences, ARKit keys at 0, textures."""
    (tmp_path / "in").mkdir()
    shutil.copy(PHOTO, tmp_path / "in" / "grace_hopper.jpg")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "batch_fit.py"), "--photos", "in", "--out", "out",
                           "--preset", "draft", "--iterations", "rig=5,joint=2,vertex=2", "--formats", "GLB,FBX,OBJ",
                           "--core-python", sys.executable], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    row = json.loads((out / "summary.json").read_text())["photos"][0]
    assert row["exports"] == {"GLB": "grace_hopper.glb", "FBX": "grace_hopper.fbx", "OBJ": "grace_hopper.obj"}
    # FBX textures are files beside it, found through relative paths after the folder moves.
    moved = tmp_path / "moved"
    out.rename(moved)
    blend = probe_in_blender(moved / "grace_hopper.blend", tmp_path / "blend.json")
    meshes = {m["name"]: m for m in blend["meshes"]}
    head, parts = meshes["grace_hopper Head"], meshes["grace_hopper Eyes and Mouth"]
    assert set(blend["armatures"]) == {"grace_hopper Rig"}
    bones = blend["armatures"]["grace_hopper Rig"]
    for m in (head, parts):
        assert m["keys"] and all(v == 0.0 for v in m["keys"].values())
    # Every key moves the mesh it is on, except the head's tongueOut: a slider that drives the tongue.
    assert min(v for k, v in head["key_moves"].items() if k != "tongueOut") > 1e-6
    assert head["key_moves"]["tongueOut"] == 0.0 and min(parts["key_moves"].values()) > 1e-6
    assert set(head["keys"]) == set(ARKIT_EXPRESSIONS)
    influences = head["max_influences"]
    assert influences > 4
    for ext in ("glb", "fbx", "obj"):
        info = probe_in_blender(moved / f"grace_hopper.{ext}", tmp_path / f"{ext}.json")
        got = sorted(info["meshes"], key=lambda m: -len(m["verts"]))
        assert len(got) == 2, [m["name"] for m in got]
        # the rest shape as it opens: the .blend's head and parts, wherever the format splits UV seams
        assert point_set_distance(got[0]["verts"], head["verts"]) < 1e-4, ext
        assert point_set_distance(got[1]["verts"], parts["verts"]) < 1e-4, ext
        assert got[1]["uv_layers"] == 1, ext  # the eyes' and teeth's UVs survive every format
        if ext == "obj":
            assert not info["armatures"] and not any(m["keys"] for m in got)
            continue
        (arm_bones,) = info["armatures"].values()
        assert sorted(arm_bones) == sorted(bones), ext
        assert got[0]["max_influences"] == influences, ext
        for m, want in ((got[0], head), (got[1], parts)):
            assert m["keys"].keys() == want["keys"].keys() and not any(m["keys"].values()), ext
        assert len(info["images"]) >= 2 and all(i["has_data"] for i in info["images"]), (ext, info["images"])
