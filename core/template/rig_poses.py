"""The poses a rig is checked in, and how a head's skin moves under its bones' part of them.

``POSES`` is the one list of the rig binding checks' poses (``scripts/animation_check.py`` poses a
GLB in Blender with it; ``core.fit.pose_safe`` keeps a fitted rest shape safe under the bone
poses): jaw, neck and eye turns as local Euler angles of a bone, and expressions as shape-key
values. The bone names are the default head's; an imported head's bones that stand for them
come from its import's ``default_joints`` (``model.bone_aliases``).

A bone turned in a pose turns everything below it rigidly about its head, as an armature does:
``pose_transforms`` gives each joint's world transform from its rest to the pose, and
``skin_pose`` carries a rest mesh through them by linear blend skinning with the template's
weights.
"""

from __future__ import annotations

import numpy as np

from .model import bone_aliases
from .mouth import jaw_joint, upper_lip_joints

# (name, {bone: (x, y, z) degrees of local Euler rotation, XYZ order}, {shape key: value})
POSES = (
    ("jaw_0", {"jaw": (0, 0, 0)}, {}),
    ("jaw_15", {"jaw": (15, 0, 0)}, {}),
    ("jaw_25", {"jaw": (25, 0, 0)}, {}),
    ("jaw_30", {"jaw": (30, 0, 0)}, {}),
    ("neck_left", {"neck02": (0, 30, 0)}, {}),
    ("neck_right", {"neck02": (0, -30, 0)}, {}),
    ("eyes_left", {"eye.L": (0, 0, 25), "eye.R": (0, 0, 25)}, {}),
    ("eyes_right", {"eye.L": (0, 0, -25), "eye.R": (0, 0, -25)}, {}),
    ("eyes_up", {"eye.L": (25, 0, 0), "eye.R": (25, 0, 0)}, {}),
    ("eyes_down", {"eye.L": (-25, 0, 0), "eye.R": (-25, 0, 0)}, {}),
    ("eyeBlinkLeft", {}, {"eyeBlinkLeft": 1.0}),
    ("eyeBlinkRight", {}, {"eyeBlinkRight": 1.0}),
    ("mouthSmileLeft", {}, {"mouthSmileLeft": 1.0}),
    ("jawOpen", {}, {"jawOpen": 1.0}),
    ("mouthPucker", {}, {"mouthPucker": 1.0}),
    ("browInnerUp", {}, {"browInnerUp": 1.0}),
)


def euler_xyz(degrees) -> np.ndarray:
    """(3, 3) the rotation of Euler angles (x, y, z) in degrees, XYZ order (x first): Rz Ry Rx."""
    x, y, z = np.radians(np.asarray(degrees, np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_transforms(template, joint_rest: np.ndarray, turns: dict, held=()) -> np.ndarray:
    """(J, 3, 4) each joint's world transform from rest to the pose. joint_rest: (J, 4, 4) rest
    world frames (columns: the bone's axes, translation: its head); turns: {joint name: (x, y, z)
    degrees} in the joint's own frame; held: joints kept where they rest (and with them everything
    below them that does not turn itself), as ``mouth.upper_lip_joints`` asks of a jaw pose."""
    names, parents = list(template.joint_names), np.asarray(template.joint_parents)
    frames = np.asarray(joint_rest, np.float64)
    rel = np.tile(np.eye(4), (len(names), 1, 1))
    for j, name in enumerate(names):  # parents come first
        local = np.eye(4)
        if name in turns:
            turn = np.eye(4)
            turn[:3, :3] = euler_xyz(turns[name])
            local = frames[j] @ turn @ np.linalg.inv(frames[j])
        rel[j] = (np.eye(4) if parents[j] < 0 or name in held else rel[parents[j]]) @ local
    return rel[:, :3, :]


def skin_blend(template, transforms: np.ndarray) -> np.ndarray:
    """(..., N, 3, 4) each vertex's transform: the joints' ``transforms`` (..., J, 3, 4) blended by
    the template's skin weights."""
    idx, w = np.asarray(template.skin_idx), np.asarray(template.skin_w, np.float64)
    return (np.asarray(transforms)[..., idx, :, :] * w[..., None, None]).sum(-3)


def skin_pose(template, verts: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(..., N, 3) the rest mesh ``verts`` (N, 3) carried through ``transforms`` (..., J, 3, 4) by
    the template's skin weights."""
    blend = skin_blend(template, transforms)
    return (blend[..., :3] @ np.asarray(verts, np.float64)[:, :, None])[..., 0] + blend[..., 3]


def bone_poses(template) -> list[tuple[str, dict, tuple]]:
    """[(pose name, {rig bone: degrees}, held joints)] of the POSES a template's rig can make with
    bones alone (bones named through ``bone_aliases``; a pose with a missing bone or with shape keys
    is left out; a jaw pose holds ``mouth.upper_lip_joints``)."""
    aliases, names = bone_aliases(template), set(template.joint_names)
    jaw = jaw_joint(template)
    held = tuple(upper_lip_joints(template, jaw)) if jaw is not None else ()
    out = []
    for name, bones, keys in POSES:
        turns = {aliases.get(b, b): deg for b, deg in bones.items()}
        if keys or not turns or not set(turns) <= names or not any(np.any(d) for d in turns.values()):
            continue
        out.append((name, turns, held if jaw in turns else ()))
    return out
