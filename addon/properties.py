"""Per-scene settings the panels show: photos, template choice, fit settings, result options."""

import bpy

PHOTO_STATUSES = ("ready", "missing", "sent", "fitted", "failed", "cancelled")


class LikenessPhoto(bpy.types.PropertyGroup):
    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH")
    use: bpy.props.BoolProperty(name="Use", description="Send this photo with the next fit", default=True)
    status: bpy.props.StringProperty(name="Status", default="ready")


STAGES = ("rig", "joint", "vertex")


class LikenessSettings(bpy.types.PropertyGroup):
    photos: bpy.props.CollectionProperty(type=LikenessPhoto)
    photo_index: bpy.props.IntProperty(name="Photo", min=0)

    template_source: bpy.props.EnumProperty(
        name="Template",
        items=(
            ("DEFAULT", "Default Head", "The rigged head that ships with the core"),
            ("SELECTED", "Selected Rig", "The selected mesh and its armature: vertex groups as weights, "
                                         "bones as joints, shape keys as controllers"),
            ("FILE", "File", "A template file: any head made into a template by 'likeness template import'"),
        ),
        default="DEFAULT",
    )
    template_file: bpy.props.StringProperty(name="Template File", subtype="FILE_PATH",
                                            description="A .npz template (likeness template import HEAD --out T.npz)")
    template_mesh: bpy.props.PointerProperty(name="Mesh", type=bpy.types.Object,
                                             poll=lambda self, obj: obj.type == "MESH")
    template_armature: bpy.props.PointerProperty(name="Armature", type=bpy.types.Object,
                                                 poll=lambda self, obj: obj.type == "ARMATURE")

    preset: bpy.props.EnumProperty(
        name="Quality",
        items=(
            ("draft", "Draft", "Fast preview: few iterations per stage"),
            ("default", "Default", "Balanced quality and time"),
            ("high", "High", "Most iterations: best detail, slowest"),
        ),
        default="default",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=(("cpu", "CPU", "Fit on the core's CPU"), ("cuda", "GPU (CUDA)", "Fit on the core's NVIDIA GPU")),
        default="cpu",
    )
    focal_mode: bpy.props.EnumProperty(
        name="Focal Length",
        items=(
            ("AUTO", "From Photo", "The photo's EXIF 35 mm-equivalent focal length when it has one, else estimated"),
            ("ESTIMATE", "Estimate", "Estimate the focal length from the photos (use it for cropped photos)"),
            ("GIVEN", "Given", "The 35 mm-equivalent focal length below, for every photo"),
        ),
        default="AUTO",
    )
    focal_35mm: bpy.props.FloatProperty(name="Focal (35 mm)", min=4.0, max=2000.0, default=50.0, unit="CAMERA",
                                        description="35 mm-equivalent focal length of the lens that took the photos")
    iris_from_photo: bpy.props.BoolProperty(name="Iris From Photo", default=True,
                                            description="Colour the result's irises as the photo shows them "
                                                        "(else with Iris Color)")
    iris_color: bpy.props.FloatVectorProperty(name="Iris Color", subtype="COLOR_GAMMA", size=3, min=0.0, max=1.0,
                                              default=(0.22, 0.13, 0.07),
                                              description="Colour of the result's irises (the eye texture is made with it)")
    override_rig: bpy.props.BoolProperty(name="Rig", description="Override the preset's rig-stage iterations")
    rig_iterations: bpy.props.IntProperty(name="Iterations", min=0, max=100000, default=150,
                                          description="Rig stage: controllers, head pose and camera")
    override_joint: bpy.props.BoolProperty(name="Joint", description="Override the preset's joint-stage iterations")
    joint_iterations: bpy.props.IntProperty(name="Iterations", min=0, max=100000, default=80,
                                            description="Joint stage: per-joint rotation, translation, scale")
    override_vertex: bpy.props.BoolProperty(name="Vertex", description="Override the preset's vertex-stage iterations")
    vertex_iterations: bpy.props.IntProperty(name="Iterations", min=0, max=100000, default=150,
                                             description="Vertex stage: per-vertex detail")

    result_mode: bpy.props.EnumProperty(
        name="Apply As",
        items=(
            ("NEW_OBJECT", "New Object", "A new head mesh with its own armature and expression shape keys"),
            ("SHAPE_KEY", "Shape Key", "A shape key on the template mesh (custom rigs), plus a re-fitted armature"),
        ),
        default="NEW_OBJECT",
    )
    with_armature: bpy.props.BoolProperty(name="Armature", default=True,
                                          description="Create the armature with the re-fitted joints")
    with_expressions: bpy.props.BoolProperty(name="Expression Shape Keys", default=True,
                                             description="Add the fitted expression shape keys")
    export_format: bpy.props.EnumProperty(
        name="Format",
        items=(("GLB", "glTF Binary (.glb)", ""), ("FBX", "FBX (.fbx)", ""), ("OBJ", "Wavefront (.obj)", "")),
        default="GLB",
    )

    def job_options(self) -> dict:
        """Options for the core: {"preset", "focal", "schedule": {"stages": {name: {"iterations"}}}}."""
        stages = {name: {"iterations": getattr(self, f"{name}_iterations")}
                  for name in STAGES if getattr(self, f"override_{name}")}
        options = {"preset": self.preset,
                   "focal": {"AUTO": "auto", "ESTIMATE": "estimate"}.get(self.focal_mode, float(self.focal_35mm))}
        if stages:
            options["schedule"] = {"stages": stages}
        return options


classes = (LikenessPhoto, LikenessSettings)


def register_extra():
    bpy.types.Scene.likeness = bpy.props.PointerProperty(type=LikenessSettings)


def unregister_extra():
    del bpy.types.Scene.likeness
