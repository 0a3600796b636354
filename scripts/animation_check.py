"""Animation check: does a fitted head bind and animate like the template?

Imports a result GLB and the template's GLB into Blender (the ``bpy`` module
or ``blender -b -P``), poses jaw, eyes, neck and a few expressions at their
extremes, and compares each pose with the rest shape: faces whose normal
flips and the worst edge stretch |l_posed / l_rest - 1|; with the mouth open
or at rest, the share of the front teeth a front camera sees and the rays
passing between the lips, and at rest the teeth seen or in the lips' flesh;
on a blink, the eyeball seen past the lid and the lid line's largest
dihedral angle (core/template/face_checks.py). The template under
the same poses is the yardstick: a result that binds well has about the same
figures.

    python scripts/animation_check.py RESULT.glb TEMPLATE.glb --json OUT.json
    blender -b -P scripts/animation_check.py -- RESULT.glb TEMPLATE.glb --json OUT.json
    python scripts/animation_check.py A.glb B.glb C.glb TEMPLATE.glb --json OUT.json
    python scripts/animation_check.py RESULT.glb HEAD_TEMPLATE.glb --template HEAD.npz --json OUT.json

With several results the template is measured once and OUT.json holds a list
of summaries, one per result, in order. ``--template`` names the template the
results were fitted through when it is not the default head (an imported head,
``likeness template import``): the mouth and blink checks then read its layout
and regions, and the poses turn the artist's bones that stand for the default
joints (the import's ``default_joints``). A pose whose bones the rig lacks on
both files (a face rig without a neck) is not applicable, not a failure.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # core, also under blender -P
from core.template.model import bone_aliases  # noqa: E402
from core.template.rig_poses import POSES  # noqa: E402 - the one list of the checks' poses

# Poses in which the teeth are measured from the front, and the blinks' eyes.
TEETH_POSES = ("jaw_0", "jaw_25", "jawOpen")
BLINKS = {"eyeBlinkLeft": "l", "eyeBlinkRight": "r"}


def _load(bpy, path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Keep the bones as written (Y along the bone), so a pose acts on the same axes in both files.
    bpy.ops.import_scene.gltf(filepath=str(path), bone_heuristic="BLENDER")
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH" and o.find_armature() is not None]
    if not meshes:
        raise SystemExit(f"{path}: no skinned mesh found")
    mesh = max(meshes, key=lambda o: len(o.data.vertices))
    arm = mesh.find_armature()
    if arm is None:
        raise SystemExit(f"{path}: the mesh has no armature")
    return mesh, arm


def evaluated_vertices(bpy, obj, world: bool = False) -> np.ndarray:
    """(N, 3) float64 vertex positions as Blender evaluates them (shape keys at their values, modifiers
    such as the armature), in object space or, with ``world``, in world space."""
    deps = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(deps)
    m = ev.to_mesh()
    co = np.empty(len(m.vertices) * 3, np.float32)
    m.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    co = co.reshape(-1, 3).astype(np.float64)
    if world:
        mw = np.array(obj.matrix_world, np.float64)
        co = co @ mw[:3, :3].T + mw[:3, 3]
    return co


def _triangles(obj) -> np.ndarray:
    mesh = obj.data
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


def _measure(rest, posed, tris) -> dict:
    def normals(v):
        return np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])

    flipped = int(((normals(rest) * normals(posed)).sum(1) < 0).sum())
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    lr = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    lp = np.linalg.norm(posed[edges[:, 0]] - posed[edges[:, 1]], axis=1)
    ok = lr > 1e-9
    stretch = float(np.abs(lp[ok] / lr[ok] - 1).max())
    return {"flipped_faces": flipped, "max_edge_stretch": stretch}


def check(bpy, path, template=None) -> dict:
    """The figures of every pose of POSES on one GLB; ``template``: the Template the GLB's head has the
    layout of (None: the default head's)."""
    mesh, arm = _load(bpy, path)
    tris = _triangles(mesh)
    rest = evaluated_vertices(bpy, mesh)
    faces = _FaceChecks(bpy, mesh, template)
    out = {}
    for name, *_ in POSES:
        skipped = apply_pose(bpy, arm, mesh, name, faces.aliases, faces.with_the_face)
        if skipped:
            bones, keys = missing_for_pose(arm, mesh, name, faces.aliases)
            out[name] = {"skipped": skipped, "missing_bones": bones, "missing_keys": keys}
            continue
        posed = evaluated_vertices(bpy, mesh)
        out[name] = {**_measure(rest, posed, tris), **faces.measure(name, posed)}
    return out


def posed_head(bpy, path, pose: str, template=None) -> tuple[np.ndarray, np.ndarray]:
    """(head (N, 3), parts (P, 3)) of the GLB at ``path`` in the pose ``pose`` of POSES, in the
    template's vertex order and frame (``template``: the layout it was fitted through; None: the
    default head's). SystemExit where the pose cannot be made or the layout differs."""
    mesh, arm = _load(bpy, path)
    faces = _FaceChecks(bpy, mesh, template)
    if not faces.ok:
        raise SystemExit(f"{path}: the head or its parts differ from the template's layout")
    skipped = apply_pose(bpy, arm, mesh, pose, faces.aliases, faces.with_the_face)
    if skipped:
        raise SystemExit(f"{path}: cannot pose {pose}: {skipped}")
    return faces.in_template_order(evaluated_vertices(bpy, mesh))


class _FaceChecks:
    """The mouth and eyelid checks (core/template/face_checks.py) on the posed head and its parts:
    the front teeth seen and rays between the lips in TEETH_POSES, the eyeball seen and the lid
    line's largest dihedral in BLINKS. The head's and the parts' vertices map back to the default
    template's order (the GLB writer's layout, split at UV seams); a head of another layout is
    measured for bending only."""

    def __init__(self, bpy, mesh, template=None):
        import torch

        from core.template.mesh_layout import glb_head_vertex_map, glb_part_vertex_map
        from core.template.mouth import jaw_joint, upper_lip_joints
        from core.template import load_default

        self.bpy, self.torch, self.t = bpy, torch, template if template is not None else load_default()
        # default joint name -> the rig's bone that stands for it (an imported head's), else itself
        self.aliases = bone_aliases(self.t)
        self.with_the_face = upper_lip_joints(self.t, jaw_joint(self.t))
        self.vmap, self.pmap = glb_head_vertex_map(self.t), glb_part_vertex_map(self.t)
        self.parts = next((o for o in bpy.context.scene.objects if o.type == "MESH" and o is not mesh
                           and len(o.data.vertices) == len(self.pmap)), None)
        self.ok = self.parts is not None and len(mesh.data.vertices) == len(self.vmap)

    def in_template_order(self, posed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(head (N, 3), parts (P, 3)) in the template's vertex order: the posed head's vertices as
        the GLB holds them and the parts as they are posed now."""
        head = np.zeros((self.t.num_verts, 3))
        head[self.vmap] = posed
        parts = np.zeros((len(self.t.part_verts), 3))
        parts[self.pmap] = evaluated_vertices(self.bpy, self.parts)
        return head, parts

    def measure(self, pose: str, posed: np.ndarray) -> dict:
        from core.template import face_checks as fc

        if pose not in TEETH_POSES and pose not in BLINKS:
            return {}
        if not self.ok:
            return {"face_checks": "skipped: the head or its parts differ from the template's layout"}
        verts, parts = (self.torch.as_tensor(a, dtype=self.torch.float32) for a in self.in_template_order(posed))
        if pose in TEETH_POSES:
            out = {"front_teeth_seen": fc.front_teeth_visible(self.t, verts, parts),
                   "rays_between_lips": fc.rays_between_lips(self.t, verts, parts)}
            if pose == "jaw_0":
                out["teeth_outside_lips"] = fc.teeth_outside_lips(self.t, verts, parts)
            return out
        side = BLINKS[pose]
        return {"eyeball_seen": fc.eyeball_visible(self.t, verts, parts, side),
                "lid_line_dihedral": fc.lid_line_dihedral(self.t, verts, side)}


def _pose(name: str, aliases: dict | None) -> tuple[dict, dict]:
    """({bone: degrees}, {shape key: value}) of pose ``name``, the bones renamed by ``aliases``."""
    bones, shapes = next((b, s) for n, b, s in POSES if n == name)
    return {(aliases or {}).get(b, b): deg for b, deg in bones.items()}, shapes


def missing_for_pose(arm, mesh, name: str, aliases: dict | None = None) -> tuple[list[str], list[str]]:
    """(bones, shape keys) pose ``name`` needs that the armature or the head lacks."""
    bones, shapes = _pose(name, aliases)
    keys = mesh.data.shape_keys.key_blocks if mesh.data.shape_keys else []
    return ([b for b in bones if b not in arm.pose.bones],
            [s for s in shapes if not any(s.lower() in kb.name.lower() for kb in keys)])


def apply_pose(bpy, arm, mesh, name: str, aliases: dict | None = None, with_the_face=()) -> str | None:
    """Put the armature and the head's shape keys in the pose ``name`` of POSES (everything else
    at rest); ``aliases`` maps a default joint's name to the rig's bone for it; ``with_the_face``:
    bones under the jaw that a jaw pose leaves where they rest (``mouth.upper_lip_joints``). Returns None,
    or why the pose cannot be made (missing bones or shape keys)."""
    bones, shapes = _pose(name, aliases)
    keys = mesh.data.shape_keys.key_blocks if mesh.data.shape_keys else []
    # The other meshes on the same armature (eyes, teeth, tongue) carry the same keys; the add-on
    # drives them from the head's, a GLB cannot, so they are set here by name as the drivers would.
    others = [kb for o in bpy.context.scene.objects
              if o.type == "MESH" and o is not mesh and o.find_armature() is arm and o.data.shape_keys
              for kb in o.data.shape_keys.key_blocks]
    for pb in arm.pose.bones:
        pb.rotation_mode = "XYZ"
        pb.rotation_euler = (0, 0, 0)
        pb.location = (0, 0, 0)  # a held bone (with_the_face) was moved
        pb.scale = (1, 1, 1)
    for kb in (*keys, *others):
        kb.value = 0.0
    missing, missing_keys = missing_for_pose(arm, mesh, name, aliases)
    if missing or missing_keys:
        return f"missing bones {missing} or shape keys {missing_keys}"
    matched = {s: [kb for kb in keys if s.lower() in kb.name.lower()] for s in shapes}
    for b, deg in bones.items():
        arm.pose.bones[b].rotation_euler = tuple(math.radians(d) for d in deg)
    jaw = (aliases or {}).get("jaw", "jaw")
    if jaw in bones and with_the_face:
        for b in with_the_face:  # parents first: each is held where it rests in the armature's space
            bpy.context.view_layer.update()
            arm.pose.bones[b].matrix = arm.data.bones[b].matrix_local
    for s, value in shapes.items():
        for kb in matched[s] + [kb for kb in others if s.lower() in kb.name.lower()]:
            kb.value = value
    bpy.context.view_layer.update()
    return None


# Per pose, a result may stretch its worst edge this many times the template's
# (plus float noise: a rigid pose stretches nothing, ~1e-4 in float32).
STRETCH_RATIO_MAX = 1.5
STRETCH_NOISE = 1e-3
# Mouth and blink targets (see _face_failures).
FRONT_TEETH_SEEN_MIN = 0.5
LID_DIHEDRAL_MARGIN = 10.0


def pose_failures(result: dict, template: dict) -> list[str]:
    """The rig binding checks, pose by pose: flipped faces <= the template's, worst edge
    stretch <= STRETCH_RATIO_MAX x the template's, no pose skipped."""
    out = []
    for name, *_ in POSES:
        r, t = result.get(name, {"skipped": "absent"}), template.get(name, {"skipped": "absent"})
        if not_applicable(r, t):
            continue
        if "skipped" in r or "skipped" in t:
            out.append(f"{name}: skipped ({r.get('skipped') or t.get('skipped')})")
            continue
        if r["flipped_faces"] > t["flipped_faces"]:
            out.append(f"{name}: {r['flipped_faces']} flipped faces (template {t['flipped_faces']})")
        if r["max_edge_stretch"] > STRETCH_RATIO_MAX * t["max_edge_stretch"] + STRETCH_NOISE:
            out.append(f"{name}: worst edge stretch {r['max_edge_stretch']:.2f} "
                       f"(template {t['max_edge_stretch']:.2f}, allowed {STRETCH_RATIO_MAX}x)")
        out += _face_failures(name, r, t)
    return out


def not_applicable(r: dict, t: dict) -> bool:
    """A pose neither file's rig can make, for the same missing bones (a face rig without a neck)."""
    return (bool(r.get("missing_bones")) and r.get("missing_bones") == t.get("missing_bones")
            and not r.get("missing_keys") and not t.get("missing_keys"))


def _face_failures(name: str, r: dict, t: dict) -> list[str]:
    """The mouth and blink targets: at rest no ray between the lips and no tooth seen or in the
    lips' flesh; >= FRONT_TEETH_SEEN_MIN of the front teeth seen with the mouth open; a blink
    hides its eyeball and its lid line bends at most LID_DIHEDRAL_MARGIN degrees more than the
    template's."""
    if "face_checks" in r:
        return [f"{name}: {r['face_checks']}"]
    out = []
    if name == "jaw_0" and r.get("rays_between_lips", 0) > 0:
        out.append(f"{name}: {r['rays_between_lips']} front rays ({r['rays_between_lips'] * 0.01:.1f} mm²) "
                   f"pass between the lips at rest")
    if name == "jaw_0" and r.get("teeth_outside_lips", 0) > 0:
        out.append(f"{name}: {r['teeth_outside_lips']} teeth vertices seen or in the lips' flesh at rest")
    if name in TEETH_POSES and name != "jaw_0" and r.get("front_teeth_seen", 1.0) < FRONT_TEETH_SEEN_MIN:
        out.append(f"{name}: {r['front_teeth_seen']:.0%} of the front teeth seen "
                   f"(template {t.get('front_teeth_seen', float('nan')):.0%}, {FRONT_TEETH_SEEN_MIN:.0%} wanted)")
    if name in BLINKS:
        if r.get("eyeball_seen", 0.0) > 0.0:
            out.append(f"{name}: the lid leaves {r['eyeball_seen']:.0%} of the eyeball's front seen")
        if r.get("lid_line_dihedral", 0.0) > t.get("lid_line_dihedral", 180.0) + LID_DIHEDRAL_MARGIN:
            out.append(f"{name}: lid line dihedral {r['lid_line_dihedral']:.0f}° "
                       f"(template {t['lid_line_dihedral']:.0f}°, allowed +{LID_DIHEDRAL_MARGIN:.0f}°)")
    return out


def compare(result: dict, template: dict) -> dict:
    poses = [p for p in result if "skipped" not in result[p] and "skipped" not in template.get(p, {"skipped": 1})]
    return {
        "failures": pose_failures(result, template),
        "poses": len(poses),
        "not_applicable": [p for p in result if not_applicable(result[p], template.get(p, {}))],
        "flipped_faces_max": max((result[p]["flipped_faces"] for p in poses), default=0),
        "template_flipped_faces_max": max((template[p]["flipped_faces"] for p in poses), default=0),
        "max_edge_stretch": max((result[p]["max_edge_stretch"] for p in poses), default=0.0),
        "template_max_edge_stretch": max((template[p]["max_edge_stretch"] for p in poses), default=0.0),
        # Per pose, how many more faces flip on the result than on the template.
        "extra_flipped_faces_max": max((result[p]["flipped_faces"] - template[p]["flipped_faces"] for p in poses),
                                       default=0),
        "stretch_ratio_max": max((result[p]["max_edge_stretch"] / max(template[p]["max_edge_stretch"], 1e-9)
                                  for p in poses), default=0.0),
        "result": result,
        "template": template,
    }


def main(argv=None) -> int:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else (argv if argv is not None else sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("glbs", nargs="+", metavar="GLB", help="one or more result GLBs, then the template GLB")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--template", help="the .npz template the results were fitted through (default: the default head)")
    args = p.parse_args(argv)
    from core.fit.result_set import ResultSetError, check_result_file

    if len(args.glbs) < 2:
        p.error("give at least one result GLB and the template GLB")
    results, template_glb = args.glbs[:-1], args.glbs[-1]
    try:
        for path in results:
            check_result_file(path)  # a set cut short by a kill is refused, not measured
    except ResultSetError as exc:
        print(f"animation_check: {exc}", file=sys.stderr)
        return 2
    import bpy

    layout = None
    if args.template:
        from core.template import TemplateError, load

        try:
            layout = load(args.template)
        except (TemplateError, OSError) as exc:
            print(f"animation_check: {exc}", file=sys.stderr)
            return 2
    template = check(bpy, template_glb, layout)
    summaries = [compare(check(bpy, path, layout), template) for path in results]
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2) + "\n")
    for path, summary in zip(results, summaries):
        print(path, json.dumps({k: v for k, v in summary.items() if k not in ("result", "template")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
