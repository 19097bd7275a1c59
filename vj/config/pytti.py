"""pytti's configs as vj presets: a pass over the raw mapping, before the keys are checked, that turns pytti's keys
into vj's (timing in steps into seconds, `''` weights into 0, Hydra's markers), takes pytti's defaults for an
overlay, and says what it approximates.

Each approximation is one warning naming the substitution; with `strict` it is a problem (refused) instead.
Keys that change nothing in the picture (pytti's output and runtime settings, 3D keys outside 3D mode, Hydra's
scaffolding) are accepted with a warning even with `strict`: the render is what pytti would have made.
"""

import re
import secrets

from vj.config.yaml_lines import LineDict

# pytti-core's `default.yaml` (the values a run gets), for the keys vj has or translates: an overlay (a file with
# `# @package _global_` or a `defaults:` list) takes these for what it does not set. Not the seed: pytti's is
# `${now:%f}` (random); an overlay keeps vj's seed 0 so that its renders repeat.
PYTTI_DEFAULTS = {
    "image_model": "Unlimited Palette",
    "ViTB32": True,
    "frames_per_second": 12,
    "width": 512,
    "height": 512,
    "steps_per_scene": 100,
    "steps_per_frame": 50,
    "interpolation_steps": 0,
    "pre_animation_steps": 50,
    "learning_rate": None,
    "reset_lr_each_frame": True,
    "cutouts": 40,
    "cut_pow": 2,
    "cutout_border": 0.25,
    "border_mode": "clamp",
    "infill_mode": "wrap",
    "sampling_mode": "bicubic",
    "smoothing_weight": 0.02,
    "random_initial_palette": False,
    "palette_size": 5,
    "palettes": 20,
    "gamma": 1,
    "hdr_weight": 0.01,
    "palette_normalization_weight": 0.2,
    "show_palette": False,
    "lock_palette": False,
    "animation_mode": "off",
    "frame_stride": 1,
    "reencode_each_frame": True,
}

# pytti's output, display and runtime settings: they change nothing in the frames
IGNORED = (
    "file_namespace allow_overwrite display_every clear_every display_scale save_every save_every_n_frames backups "
    "show_graphs approximate_vram_usage use_tensorboard models_parent_dir device use_mmc mmc_models"
).split()
HYDRA = ("defaults", "hydra")
# pytti's 3D keys at their defaults: away from them outside 3D mode, they are ignored (by pytti too)
THREE_D = {
    "translate_z_3d": "0",
    "rotate_3d": "[1,0,0,0]",
    "field_of_view": "60",
    "near_plane": "1",
    "far_plane": "10000",
    "lock_camera": "True",
}
TWO_D = {"rotate_2d": "0", "zoom_x_2d": "0", "zoom_y_2d": "0"}  # ignored in 3D mode (pytti's zoom_3d has no use)
UNIMPLEMENTED_LOSSES = ("flow_stabilization_weight",)
STEP_KEYS = ("steps_per_scene", "interpolation_steps", "pre_animation_steps")
# every pytti key this pass takes away (the keys vj shares with pytti stay): an unknown key close to one of these
# is suggested as pytti's key, never as a different vj key
PYTTI_KEYS = (
    *STEP_KEYS,
    "vqgan_model",
    "flow_long_term_samples",
    *UNIMPLEMENTED_LOSSES,
    *IGNORED,
    *HYDRA,
)
MISSING = "???"
SEED_INTERPOLATION = re.compile(r"^\$\{now:[^}]*\}$")
OVERLAY_MARK = re.compile(r"^\s*#\s*@package\s+_global_\s*$", re.MULTILINE)


def is_overlay(text):
    """Whether a file's text marks it as a pytti (Hydra) overlay: a line `# @package _global_`."""
    return bool(OVERLAY_MARK.search(text))


def _off(value):
    """Whether a pytti weight is off: missing, '', 0 or '0'."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "0")) or value == 0


def _steps(value):
    """A count of steps (an integer ≥ 0), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        return None
    return int(value)


def _rate(value, fallback):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else fallback


class _Pass:
    def __init__(self, raw, problems, warnings, strict):
        self.raw, self.problems, self.warnings, self.strict = raw, problems, warnings, strict

    def line(self, key):
        return getattr(self.raw, "lines", {}).get(key)

    def note(self, key, message):
        """A warning (never refused): the render is what pytti would have made."""
        line = self.line(key)
        self.warnings.append(f"line {line}: {key}: {message}" if line else f"{key}: {message}")

    def substitute(self, key, message, strict_message=None):
        """An approximation: a warning, or with --strict a problem."""
        if self.strict:
            self.problems.add(self.line(key), key, f"{strict_message or message} (--strict refuses substitutions)")
        else:
            self.note(key, message)

    def drop(self, key):
        self.raw.pop(key, None)
        self.raw.lines.pop(key, None)

    def set(self, key, value):
        self.raw[key] = value
        self.raw.lines.setdefault(key, None)


def translate(raw, problems, warnings, strict=False, overlay=False, fields=()):
    """Turn pytti's keys in `raw` (a LineDict, changed in place) into vj's; `fields` are vj's preset keys (the
    expression keys among them take `''` as 0). Problems go to `problems` (vj.config.loading._Problems), warnings
    (text) to `warnings`."""
    if not isinstance(raw, LineDict):
        return
    p = _Pass(raw, problems, warnings, strict)
    overlay = overlay or "defaults" in raw
    _hydra(p, fields)
    given = set(raw)
    if overlay:
        if "scenes" not in raw:  # pytti's default is Hydra's "missing" marker
            p.problems.add(None, "scenes", "no scenes given (pytti's default.yaml leaves them to each file)")
        for name, value in PYTTI_DEFAULTS.items():
            if name not in raw:
                p.set(name, value)
    elif any(k in raw for k in STEP_KEYS) and "frames_per_second" not in raw:
        p.set("frames_per_second", PYTTI_DEFAULTS["frames_per_second"])  # it counts in pytti's steps: pytti's rate
        p.note(
            next(k for k in STEP_KEYS if k in raw),
            f"counted in pytti's steps without frames_per_second: pytti's {PYTTI_DEFAULTS['frames_per_second']} fps "
            "is used (vj's default is 24)",
        )
    _mmc(p)
    _ignored(p)
    _expressions(p, fields)
    _seed(p)
    _sizes(p)
    _image_model(p)
    _unused(p)
    _timing(p, given)


def _hydra(p, fields):
    hydra = [k for k in HYDRA if k in p.raw]
    if hydra:
        p.note(
            hydra[0],
            f"Hydra's {' and '.join(f'`{k}:`' for k in hydra)} ignored: vj reads this one file "
            "(pytti's defaults fill what an overlay does not set)",
        )
        for k in hydra:
            p.drop(k)
    for name, value in list(p.raw.items()):
        if value != MISSING:
            continue
        if name == "scenes":
            p.problems.add(p.line(name), name, "no scenes given (scenes: ??? is Hydra's 'missing' marker)")
        else:
            p.problems.add(p.line(name), name, f"{MISSING} is Hydra's 'missing' marker: give a value")
            p.drop(name)
    for name, value in list(p.raw.items()):
        if name in fields and name != "seed" and isinstance(value, str) and value.strip().startswith("${"):
            p.problems.add(p.line(name), name, f"Hydra interpolation '{value}' is not resolved by vj; write the value")
            p.drop(name)


def _ignored(p):
    names = [k for k in IGNORED if k in p.raw]
    model = str(p.raw.get("image_model", "")).strip().lower()
    if "vqgan_model" in p.raw and model != "vqgan":
        names.append("vqgan_model")
    if "flow_long_term_samples" in p.raw and _off(p.raw.get("flow_stabilization_weight")):
        names.append("flow_long_term_samples")
    if not names:
        return
    names.sort(key=lambda k: p.line(k) or 0)
    first = names[0]
    p.note(
        first, f"pytti's output and runtime settings ignored (they change nothing in the frames): {', '.join(names)}"
    )
    for k in names:
        p.drop(k)


def _mmc(p):
    """pytti's MMC perceptors (`use_mmc` with `mmc_models`): OpenAI CLIP models guide as vj `perceptors`; other
    models are left out (a substitution). Without `use_mmc` the list is ignored, as pytti ignores it."""
    models = p.raw.get("mmc_models")
    if p.raw.get("use_mmc") is not True or not isinstance(models, list):
        return
    names, left = [], []
    for m in models:
        fields = {k: str(v).lower() for k, v in m.items()} if isinstance(m, dict) else {}
        if fields.get("architecture") == "clip" and fields.get("publisher") == "openai" and m.get("id"):
            names.append(f"{str(m['id']).replace('/', '-')}/openai")
        else:
            left.append(str(m.get("id", m)) if isinstance(m, dict) else str(m))
    line = p.line("mmc_models")
    p.drop("use_mmc")
    p.drop("mmc_models")
    if names:
        listed = p.raw.get("perceptors")
        given = list(listed) if isinstance(listed, list) else []
        p.set("perceptors", given + [n for n in names if n not in given])
        p.raw.lines["perceptors"] = p.raw.lines.get("perceptors") or line
        p.raw.lines["mmc_models"] = line  # for the message's line
        p.note("mmc_models", f"pytti's MMC models guide as perceptors: {', '.join(names)}")
    if left:
        p.raw.lines["mmc_models"] = line
        p.substitute(
            "mmc_models",
            f"{', '.join(left)} left out: vj guides with open_clip's CLIP models only",
            f"{', '.join(left)}: vj guides with open_clip's CLIP models only; use perceptors",
        )
    p.raw.lines.pop("mmc_models", None)


def _expressions(p, fields):
    """pytti writes an unset weight or motion as `''`: 0 (an unset rotate_3d: no turn)."""
    for name, spec in fields.items():
        if spec.check.late and isinstance(p.raw.get(name), str) and not p.raw[name].strip():
            if name == "rotate_3d":
                p.drop(name)
            else:
                p.raw[name] = 0


def _seed(p):
    if "seed" not in p.raw:
        return
    value = p.raw["seed"]
    text = value.strip() if isinstance(value, str) else None
    if value is None or (text is not None and SEED_INTERPOLATION.match(text)):
        seed = secrets.randbelow(2**32)
        written = "null" if value is None else value
        p.note(
            "seed", f"`{written}` asks for a random seed: this run uses seed {seed}; write `seed: {seed}` to repeat it"
        )
        p.raw["seed"] = seed


def _sizes(p):
    for name in ("width", "height"):
        value = p.raw.get(name)
        if p.line(name) is None:  # a command-line value is checked as given: only files are pytti's
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 64 or value % 8 == 0:
            continue
        rounded = (value + 4) // 8 * 8
        low, high = value // 8 * 8, value // 8 * 8 + 8
        p.substitute(
            name,
            f"{value} is not a multiple of 8: vj renders {rounded} (the nearest multiple of 8)",
            f"must be a multiple of 8, got {value}: use {low} or {high}",
        )
        if p.strict:
            p.drop(name)  # refused once, here
        else:
            p.raw[name] = rounded


def _image_model(p):
    """VQGAN: rendered by the Unlimited Palette pixel model, which keeps pytti's optimisation (CLIP-guided steps per
    frame, the same losses and stabilization), with only the image's parameterisation different."""
    model = p.raw.get("image_model")
    if not (isinstance(model, str) and model.strip().lower() == "vqgan"):
        return
    extra = []
    if "vqgan_model" in p.raw:
        extra.append(f"vqgan_model {p.raw['vqgan_model']} ignored")
        p.drop("vqgan_model")
    if p.raw.get("learning_rate") is not None and not p.strict:
        extra.append(
            f"learning_rate {p.raw['learning_rate']} (set for VQGAN's latent) dropped for the pixel model's own"
        )
        p.drop("learning_rate")
    p.substitute(
        "image_model",
        "VQGAN is not supported by vj (no VQGAN weights or code): rendered by unlimited_palette, pytti's RGB pixel "
        "model, optimised the same way (CLIP guidance, steps_per_frame, the same losses)"
        + (f"; {'; '.join(extra)}" if extra else ""),
        "VQGAN is not supported by vj (no VQGAN weights or code); use unlimited_palette (what vj substitutes "
        "without --strict), limited_palette or diffusion",
    )
    if p.strict:
        p.drop("image_model")  # refused once, here
    else:
        p.raw["image_model"] = "unlimited_palette"


def _unused(p):
    """Losses vj lacks (flow), and motion keys the animation mode does not use: said once each."""
    losses = [k for k in UNIMPLEMENTED_LOSSES if k in p.raw and not _off(p.raw[k])]
    if losses:
        p.substitute(
            losses[0],
            f"{' and '.join(losses)} not implemented (no optical-flow model in vj): left out; direct, semantic, "
            "edge and depth stabilization work",
            f"{' and '.join(losses)} not implemented (no optical-flow model in vj); set them to '' or 0, and use "
            "direct, semantic, edge or depth stabilization",
        )
    for k in (*UNIMPLEMENTED_LOSSES, "flow_long_term_samples"):
        p.drop(k)
    mode = p.raw.get("animation_mode")
    three_d = isinstance(mode, str) and mode.strip().lower() == "3d"
    depth = "depth_stabilization_weight" in p.raw and not _off(p.raw["depth_stabilization_weight"])
    if (three_d or depth) and "depth_model" not in p.raw:
        key = "animation_mode" if three_d else "depth_stabilization_weight"
        p.substitute(
            key,
            "depth estimated by Depth Anything V2 small (vj's depth_model), not pytti's AdaBins: the same motion, "
            "another depth estimate; set depth_model to choose the model",
            "vj estimates depth with a transformers model, not pytti's AdaBins; set depth_model to accept that",
        )
    unused = TWO_D if three_d else THREE_D
    moved = [k for k, default in unused.items() if k in p.raw and str(p.raw[k]).replace(" ", "") != default]
    if moved:
        p.note(
            moved[0],
            f"{', '.join(moved)} ignored: pytti uses "
            + (
                "them only in 2D mode (3D moves by translate_x/y, translate_z_3d and rotate_3d)"
                if three_d
                else "them only with animation_mode: 3D"
            ),
        )


def _timing(p, given):
    """pytti counts in optimizer steps; vj in seconds: a step lasts 1/(steps_per_frame·frames_per_second) s."""
    steps = {k: p.raw[k] for k in STEP_KEYS if k in p.raw}
    bad = False
    for k, value in steps.items():
        if _steps(value) is None or (k == "steps_per_scene" and value == 0):
            floor = 1 if k == "steps_per_scene" else 0
            p.problems.add(p.line(k), k, f"must be an integer >= {floor} (optimizer steps), got {value!r}")
            bad = True
    pre_line = p.line("pre_animation_steps")
    for k in STEP_KEYS:
        p.drop(k)
    if bad or not steps:
        return
    spf = _rate(p.raw.get("steps_per_frame"), 50)
    fps = _rate(p.raw.get("frames_per_second"), 24)
    step = 1 / (spf * fps)
    per_scene = steps.get("steps_per_scene")
    pre = int(steps.get("pre_animation_steps", 0))
    if per_scene is not None:
        seconds = [per_scene * step]
        if 0 < pre < per_scene:  # pytti's t starts after the pre-animation steps, inside the first scene
            seconds = [(per_scene - pre) * step, per_scene * step]
            scenes = p.raw.get("scenes")
            if not isinstance(scenes, str) or sum(bool(s.strip()) for s in scenes.split("||")) < 2:
                seconds = seconds[:1]
        _derive(p, given, "scene_duration", "steps_per_scene", seconds if len(seconds) > 1 else seconds[0])
    if "interpolation_steps" in steps:
        _derive(p, given, "transition_time", "interpolation_steps", steps["interpolation_steps"] * step)
    if pre:
        p.raw.lines["pre_animation_steps"] = pre_line  # for the message's line
        p.substitute(
            "pre_animation_steps",
            f"{pre} dropped: vj has no pre-animation phase (pytti optimises the first frame {pre} steps more "
            "before time starts); scene changes stay where pytti's fall",
            f"{pre}: vj has no pre-animation phase; set pre_animation_steps: 0",
        )
        p.raw.lines.pop("pre_animation_steps", None)


def _derive(p, given, vj_key, pytti_key, value):
    seconds = ", ".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"
    if vj_key in given and pytti_key in given:
        p.note(vj_key, f"given with pytti's {pytti_key} (= {seconds} s): {vj_key} is used")
    elif vj_key not in given:
        p.set(vj_key, value)
