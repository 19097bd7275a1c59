"""The words presets share with the engine, defined once: the engine checks its settings against them and the
preset schema offers them as choices. Plain Python (no torch), so `vj check` and `vj schema` stay light."""

# what fills a cutout's crop outside the frame (vj.engine.guidance.cutouts)
BORDER_MODES = ("clamp", "mirror", "wrap", "black", "smear")
# what fills the edges a motion warp uncovers, and how the warp interpolates (engine.diffusion.frames, engine.motion)
INFILL_MODES = ("mirror", "wrap", "black", "smear")
SAMPLING_MODES = ("nearest", "bilinear", "bicubic")
# pytti's perceptor flags: flag -> (open_clip model name, weights tag) (vj.engine.guidance.perceptors)
PYTTI_FLAGS = {
    "ViTB32": ("ViT-B-32", "openai"),
    "ViTB16": ("ViT-B-16", "openai"),
    "ViTL14": ("ViT-L-14", "openai"),
    "ViTL14_336px": ("ViT-L-14-336", "openai"),
    "RN50": ("RN50", "openai"),
    "RN101": ("RN101", "openai"),
    "RN50x4": ("RN50x4", "openai"),
    "RN50x16": ("RN50x16", "openai"),
    "RN50x64": ("RN50x64", "openai"),
}
# the depth model of 3D animation (vj.engine.depth.models): Depth Anything V2 small, relative depth, on the hub
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
# latent-blending transition qualities: name -> leaves of the tree, endpoints included (vj.engine.transitions.plans)
QUALITIES = {"lowest": 5, "low": 9, "medium": 13, "high": 21, "ultra": 33}
# ControlNet (vj.engine.diffusion.controlnet): the control images that are not files (the Video Source frame, the
# previous frame moved by this frame's motion), and the preprocessors that turn an image into a control map
CONTROL_IMAGES = ("video", "previous")
CONTROL_PREPROCESSORS = ("none", "canny", "depth")
