"""CLIP guidance from a preset: which perceptors, the pictures and masks it names, and each frame's weights.

Nothing here imports torch at module level, so `vj check` can use it. Guidance is on when the preset asks for something
only CLIP can do (image prompts, masks, stops, direct image prompts, semantic or stabilization weights, smoothing),
names perceptors, or uses a pixel image model; a plain text preset streams diffusion frames without loading any
perceptor.
"""

import math
from pathlib import Path

import numpy as np

from vj.engine.vocabulary import PYTTI_FLAGS
from vj.config.loading import PresetError
from vj.config.loading import picture_file
from vj.language.value_ranges import KEY_KINDS, UNREPORTED

DEFAULT_PERCEPTOR = "ViT-B-32/openai"  # pytti's default (ViTB32: true)
CUTOUT_DIRECTIONS = ("near", "far")  # pytti's `n` and `f`: they select cutouts by size, not pixels
WEIGHT_KEYS = (
    "semantic_init_weight",
    "direct_stabilization_weight",
    "semantic_stabilization_weight",
    "edge_stabilization_weight",
    "depth_stabilization_weight",
    "smoothing_weight",
)


def _is_zero(expression):
    return expression.is_constant and expression(None) == 0


def _clip_only(prompt):
    """Whether a scene prompt needs CLIP: an image, a mask or a stop."""
    stop = prompt.stop
    return prompt.is_image or prompt.mask is not None or not (stop.is_constant and stop(None) == -math.inf)


def uses_guidance(preset):
    """Whether frames of this preset are CLIP guided."""
    return bool(perceptor_names(preset))


def perceptor_names(preset):
    """The perceptors (open_clip `NAME/TAG`) the preset's guidance uses; empty when it uses none."""
    names = list(preset.perceptors)
    flagged = [f"{name}/{tag}" for flag, (name, tag) in PYTTI_FLAGS.items() if getattr(preset, flag)]
    names += [name for name in flagged if name not in names]
    if names:
        return names
    needed = (
        preset.image_model != "diffusion"
        or preset.direct_image_prompts
        or any(_clip_only(p) for s in preset.scenes for p in s.prompts)
        or not all(_is_zero(getattr(preset, k)) for k in WEIGHT_KEYS)
    )
    return [DEFAULT_PERCEPTOR] if needed and preset.ViTB32 is not False else []


def read_picture(path, grey=False):
    """A picture file as uint8 HxWx3 (HxW with `grey`); an unreadable file is a PresetError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L" if grey else "RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise PresetError([f"{path}: cannot read this picture ({exc})"]) from None


def mask_key(mask):
    """A prompt mask's key: in Assets 'dir:LETTER' for directions a r l d u, 'PATH' or '-PATH' (inverted) for image
    masks; masks that select cutouts (vj.engine.guidance.objective) 'sem:PHRASE' for semantic masks and 'size:near'
    or 'size:far' for `n` and `f`, with a cutoff after the kind ('sem_0.3:PHRASE', 'size_0.6:near')."""
    if mask is None:
        return None
    if mask.kind == "semantic" or (mask.kind == "direction" and mask.value in CUTOUT_DIRECTIONS):
        kind = "sem" if mask.kind == "semantic" else "size"
        return f"{kind}{'' if mask.cutoff is None else f'_{mask.cutoff!r}'}:{mask.value}"
    if mask.kind == "direction":
        return f"dir:{mask.value[0]}"
    return ("-" if mask.inverted else "") + mask.value


def load_assets(preset, init=None):
    """Every picture and mask the preset names, read once (paths relative to the preset; URLs downloaded or read
    from the download cache, vj.config.remote_files)."""
    from vj.engine.guidance.objective import Assets

    base = Path(preset.path).parent if preset.path else Path(".")
    pictures, masks = {}, {}
    prompts = [p for s in preset.scenes for p in s.prompts] + list(preset.direct_image_prompts)
    for prompt in prompts:
        if prompt.is_image and prompt.path not in pictures:
            pictures[prompt.path] = read_picture(picture_file(prompt.path, base))
        key = mask_key(prompt.mask)
        if prompt.mask is not None and prompt.mask.kind == "image" and key not in masks:
            mask = read_picture(picture_file(prompt.mask.value, base), grey=True).astype(np.float32) / 255.0
            masks[key] = 1.0 - mask if prompt.mask.inverted else mask
    return Assets(pictures=pictures, masks=masks, init=init)


def cutout_settings(preset):
    """The preset's cutout keys for the engine."""
    from vj.engine.guidance.objective import CutoutSettings

    return CutoutSettings(
        count=preset.cutouts,
        cut_pow=preset.cut_pow,
        border=preset.cutout_border,
        border_mode=preset.border_mode,
        augment=preset.augmentations,
        accumulation=preset.gradient_accumulation_steps,
    )


def guidance_request(preset, scene, env, hold=UNREPORTED):
    """One frame's GuidanceRequest: the scene's prompts (text and pictures) and the direct image prompts with
    their weights and stops evaluated in `env`, and the init, stabilization and smoothing weights; `hold` (a
    vj.language.value_ranges.ValueGuard) keeps every weight and the scale in its range."""
    from vj.engine.guidance.objective import GuidanceRequest, PixelTarget, Target
    from vj.language.scenes.edits import plain_prompt_text  # a text target is a prompt's plain sentence

    def weight(p, text):
        return hold("weight", f"'{text}'", p.weight(env))

    def key(name, low=None):
        value = getattr(preset, name)(env)
        return hold(KEY_KINDS[name], name, value if low is None else max(low, value))

    targets = tuple(
        Target(
            "picture" if p.is_image else "text",
            p.path if p.is_image else plain_prompt_text(p),
            weight(p, p.path if p.is_image else plain_prompt_text(p)),
            p.stop(env),
            mask_key(p.mask),
        )
        for p in preset.scenes[scene].prompts
    )
    pixels = tuple(
        PixelTarget(p.path, weight(p, p.path), p.stop(env), mask_key(p.mask)) for p in preset.direct_image_prompts
    )
    return GuidanceRequest(
        targets=targets,
        pixel_targets=pixels,
        scale=key("clip_guidance_scale", 0.0),
        steps=preset.clip_guidance_steps,
        semantic_init=key("semantic_init_weight"),
        direct_init=key("direct_init_weight"),
        direct_stabilization=key("direct_stabilization_weight"),
        semantic_stabilization=key("semantic_stabilization_weight"),
        edge_stabilization=key("edge_stabilization_weight"),
        depth_stabilization=key("depth_stabilization_weight"),
        smoothing=key("smoothing_weight"),
    )
