"""The preset schema: every key, its type, default and check, and the one place errors are made.

Keys follow pytti's names where the concept is the same. All problems of a preset are collected
and reported together, each as `file:line: key: message`.
"""

import difflib
import keyword
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vj.audio.bands import ENVELOPES, NORMALIZATIONS, Band, check_band
from vj.audio.sources import AudioError, audio_info
from vj.expressions import RESERVED_NAMES, Expression, ExpressionError, compile_expression
from vj.expressions.compiler import did_you_mean
from vj.expressions.functions import BUILTIN_VARIABLES
from vj.preset.yaml_lines import DuplicateKeyError, LineDict, LineList, load_yaml
from vj.scenes import SceneError, parse_scenes

INFILL_MODES = ("mirror", "wrap", "black", "smear")
SAMPLING_MODES = ("nearest", "bilinear", "bicubic")
TRANSITION_MODES = ("linear", "slerp")
MOTION_KEYS = ("translate_x", "translate_y", "rotate_2d", "zoom_x_2d", "zoom_y_2d")
PYTTI_ONLY = frozenset(
    "steps_per_frame cutouts cut_pow cutout_border border_mode image_model vqgan_model animation_mode "
    "learning_rate reset_lr_each_frame semantic_init_weight direct_stabilization_weight "
    "semantic_stabilization_weight edge_stabilization_weight depth_stabilization_weight "
    "flow_stabilization_weight video_path save_every save_every_n_frames file_namespace "
    "ViTB32 ViTB16 ViTL14 RN50 RN101 RN50x4 gradient_accumulation_steps palettes palette_size "
    "gamma hdr_weight translate_z_3d rotate_3d field_of_view near_plane far_plane lock_camera "
    "pre_animation_steps allow_overwrite display_every display_scale".split())


class PresetError(Exception):
    """A preset that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _number(value, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {'an integer' if integer else 'a number'}, got {value!r}")
    if integer and not float(value).is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return int(value) if integer else float(value)


def _positive(value):
    value = _number(value)
    if value <= 0:
        raise ValueError(f"must be > 0, got {value:g}")
    return value


def _non_negative(value):
    value = _number(value)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value:g}")
    return value


def _size(value):
    value = _number(value, integer=True)
    if value < 64 or value % 8:
        raise ValueError(f"must be a multiple of 8 and at least 64, got {value}")
    return value


def _text(value):
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _optional_text(value):
    return None if value is None else _text(value)


def _bool(value):
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _choice(*choices):
    def check(value):
        if value not in choices:
            hint = did_you_mean(str(value), choices)
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}{hint}")
        return value
    return check


def _in_range(lo, hi, integer=False):
    def check(value):
        value = _number(value, integer)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value:g}")
        return value
    return check


def _durations(value):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("expected a number of seconds or a list with one per scene")
    return tuple(_positive(v) for v in values)


EXPRESSION = "expression"
FILTERS = "filters"
REQUIRED = object()

# key: (check or EXPRESSION/FILTERS, default, one-line meaning for README and --help)
FIELDS = {
    "scenes": (_text, REQUIRED, "the scene string: '||' between scenes, '|' between prompts"),
    "scene_prefix": (_text, "", "text glued before every scene"),
    "scene_suffix": (_text, "", "text glued after every scene"),
    "scene_duration": (_durations, (10.0,), "seconds per scene in renders: one number or one per scene"),
    "transition_time": (_non_negative, 1.0, "seconds over which a scene fades into the next"),
    "transition_mode": (_choice(*TRANSITION_MODES), "slerp", "how conditioning crossfades: linear or slerp"),
    "duration": (lambda v: None if v is None else _positive(v), None,
                 "render length in seconds (default: the audio, else the scenes)"),
    "frames_per_second": (_in_range(1, 240), 24.0, "frames per second"),
    "width": (_size, 512, "frame width in pixels (multiple of 8)"),
    "height": (_size, 512, "frame height in pixels (multiple of 8)"),
    "seed": (_in_range(0, 2**63 - 1, integer=True), 0, "random seed"),
    "input_audio": (_optional_text, None, "audio file (wav, flac, ogg, mp3), relative to the preset"),
    "input_audio_offset": (_non_negative, 0.0, "seconds skipped at the start of input_audio"),
    "input_audio_filters": (FILTERS, (), "bandpass filters that become variables"),
    "model": (_text, "stabilityai/sd-turbo", "hub id, local path, 'tiny' or 'arch:sd-turbo'"),
    "vae": (_text, "auto", "'auto' (the model's VAE), 'taesd' (tiny VAE) or a hub id/path"),
    "steps": (_in_range(1, 50, integer=True), 1, "denoising steps per frame"),
    "strength": (EXPRESSION, 0.5, "how much each frame is re-imagined (0..1)"),
    "fixed_noise": (_bool, True, "same noise every frame (steadier) or new noise per frame"),
    "init_image": (_optional_text, None, "image for the first frame, relative to the preset"),
    "direct_init_weight": (EXPRESSION, 0.0, "keeps the init image's pixels: blend w/(1+w) each frame"),
    "translate_x": (EXPRESSION, 0.0, "pixels per frame to the right"),
    "translate_y": (EXPRESSION, 0.0, "pixels per frame down"),
    "rotate_2d": (EXPRESSION, 0.0, "degrees per frame, counterclockwise"),
    "zoom_x_2d": (EXPRESSION, 0.0, "pixels per frame of horizontal zoom (positive zooms in)"),
    "zoom_y_2d": (EXPRESSION, 0.0, "pixels per frame of vertical zoom (positive zooms in)"),
    "infill_mode": (_choice(*INFILL_MODES), "mirror", "what fills edges uncovered by motion"),
    "sampling_mode": (_choice(*SAMPLING_MODES), "bicubic", "interpolation of the motion warp"),
}

FILTER_FIELDS = {
    "variable_name": (_text, REQUIRED, "name of the variable in expressions"),
    "f_center": (_positive, REQUIRED, "center frequency in Hz"),
    "f_width": (_positive, REQUIRED, "band width in Hz (edges at f_center +- f_width/2)"),
    "order": (_in_range(1, 10, integer=True), 5, "Butterworth order, as scipy.signal.butter"),
    "envelope": (_choice(*ENVELOPES), "peak", "level detector: peak or rms"),
    "attack": (_non_negative, 0.005, "seconds for the level to rise (one-pole time constant)"),
    "release": (_positive, 0.15, "seconds for the level to fall (time constant)"),
    "gain": (_positive, 1.0, "multiplier applied to the value"),
    "normalize": (_choice(*NORMALIZATIONS), "auto", "auto gain to 0..1, fixed (full scale = 1) or none"),
    "agc_time": (_positive, 10.0, "seconds for the auto gain's peak tracker to fall"),
    "floor": (_positive, 0.001, "auto gain never divides by less than this (silence stays 0)"),
}


@dataclass(frozen=True)
class Preset:
    """A validated preset; expression keys hold compiled Expressions."""

    path: Path | None
    scenes: list
    scene_duration: tuple
    transition_time: float
    transition_mode: str
    duration: float | None
    frames_per_second: float
    width: int
    height: int
    seed: int
    input_audio: Path | None
    input_audio_offset: float
    input_audio_filters: tuple
    model: str
    vae: str
    steps: int
    strength: Expression
    fixed_noise: bool
    init_image: Path | None
    direct_init_weight: Expression
    translate_x: Expression
    translate_y: Expression
    rotate_2d: Expression
    zoom_x_2d: Expression
    zoom_y_2d: Expression
    infill_mode: str
    sampling_mode: str
    variables: tuple
    scene_text: str = ""
    warnings: tuple = field(default=())

    @property
    def audio_variables(self):
        return tuple(b.variable_name for b in self.input_audio_filters)

    def scene_durations(self):
        """One duration per scene (the last given value repeats)."""
        given = self.scene_duration
        return tuple(given[min(i, len(given) - 1)] for i in range(len(self.scenes)))


class _Problems:
    def __init__(self, name):
        self.name = name
        self.items = []

    def add(self, line, key, message):
        where = f"{self.name}:{line}" if line else self.name
        self.items.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _unknown_key(key, known, where):
    if key in PYTTI_ONLY:
        return f"pytti key '{key}' is not supported by vj; remove it"
    return f"unknown key{did_you_mean(str(key), known) or ''}; valid {where} keys: {', '.join(known)}"


def _line(mapping, key):
    return getattr(mapping, "lines", {}).get(key, getattr(mapping, "line", None))


def _check_fields(raw, fields, problems, prefix=""):
    """Typed values for `fields` from `raw`, with every problem recorded; expressions stay raw."""
    values = {}
    for key, value in raw.items():
        if key not in fields:
            problems.add(_line(raw, key), f"{prefix}{key}", _unknown_key(key, list(fields), prefix.rstrip('.') or "preset"))
    for key, (check, default, _) in fields.items():
        if key not in raw:
            if default is REQUIRED:
                problems.add(getattr(raw, "line", None), f"{prefix}{key}", "required key is missing")
            values[key] = None if default is REQUIRED else default
            continue
        if check in (EXPRESSION, FILTERS):
            values[key] = raw[key]
            continue
        try:
            values[key] = check(raw[key])
        except ValueError as exc:
            problems.add(_line(raw, key), f"{prefix}{key}", str(exc))
            values[key] = None if default is REQUIRED else default
    return values


def _filters(raw_list, line, problems, audio_rate):
    if not isinstance(raw_list, (list, tuple)):
        problems.add(line, "input_audio_filters", "expected a list of {variable_name, f_center, f_width, order}")
        return ()
    bands, seen = [], {}
    for i, item in enumerate(raw_list):
        item_line = raw_list.lines[i] if isinstance(raw_list, LineList) else line
        key = f"input_audio_filters[{i}]"
        if not isinstance(item, dict):
            problems.add(item_line, key, "expected a mapping like {variable_name: fLo, f_center: 105, f_width: 65}")
            continue
        before = len(problems.items)
        values = _check_fields(item, FILTER_FIELDS, problems, prefix=f"{key}.")
        name = values["variable_name"]
        if isinstance(name, str):
            if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
                problems.add(item_line, f"{key}.variable_name", f"'{name}' is not a valid name (letters, digits, _)")
            elif name in RESERVED_NAMES:
                problems.add(item_line, f"{key}.variable_name",
                             f"'{name}' is reserved (t, frame, functions and constants); choose another name")
            elif name in seen or name.removesuffix("_prev") in seen:
                problems.add(item_line, f"{key}.variable_name", f"'{name}' is already used by input_audio_filters[{seen.get(name, seen.get(name.removesuffix('_prev')))}]")
            seen[name] = i
            seen[f"{name}_prev"] = i
        if len(problems.items) > before:
            continue
        band = Band(**values)
        try:  # without a known track only the lower edge can be checked here; render checks the rest
            check_band(band, audio_rate or math.inf)
        except AudioError as exc:
            problems.add(item_line, key, str(exc))
        bands.append(band)
    return tuple(bands)


def _resolve(path_text, base):
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else (base / path)


def parse_preset(raw, name="<preset>", base=Path("."), path=None):
    """Validate a raw mapping (from YAML) into a Preset, or raise PresetError with every problem."""
    problems = _Problems(name)
    if not isinstance(raw, dict):
        raise PresetError([f"{name}: expected a mapping of keys (scenes: ..., width: ...), got {type(raw).__name__}"])
    values = _check_fields(raw, FIELDS, problems)

    audio_rate = None
    if values["input_audio"]:
        values["input_audio"] = _resolve(values["input_audio"], base)
        try:
            audio_rate = audio_info(values["input_audio"]).samplerate
        except AudioError as exc:
            problems.add(_line(raw, "input_audio"), "input_audio", str(exc))
    bands = _filters(values["input_audio_filters"], _line(raw, "input_audio_filters"), problems, audio_rate)
    names = tuple(b.variable_name for b in bands)
    variables = BUILTIN_VARIABLES + names + tuple(f"{n}_prev" for n in names)

    scenes = []
    if isinstance(values["scenes"], str):
        try:
            scenes = parse_scenes(values["scenes"], variables, values["scene_prefix"], values["scene_suffix"])
        except SceneError as exc:
            for problem in exc.problems:
                problems.add(_line(raw, "scenes"), "scenes", problem)
    warnings = []
    for scene in scenes:
        for prompt in scene.prompts:
            if prompt.is_image or prompt.mask is not None or not prompt.stop.is_constant or prompt.stop(None) != -math.inf:
                warnings.append(f"scene {scene.index + 1}, prompt '{prompt.source}': image prompts, masks and "
                                "stops are parsed but take effect only with CLIP guidance (not available yet)")
    if len(values["scene_duration"]) > max(len(scenes), 1):
        problems.add(_line(raw, "scene_duration"), "scene_duration",
                     f"{len(values['scene_duration'])} durations for {len(scenes)} scenes")

    for key, (check, default, _) in FIELDS.items():
        if check is EXPRESSION:
            try:
                values[key] = compile_expression(values[key], variables)
            except ExpressionError as exc:
                problems.add(_line(raw, key), key, str(exc))
                values[key] = compile_expression(default)
    if values["init_image"]:
        values["init_image"] = _resolve(values["init_image"], base)
        if not values["init_image"].is_file():
            problems.add(_line(raw, "init_image"), "init_image", f"image file '{values['init_image']}' not found")

    if problems.items:
        raise PresetError(problems.items)
    values["scene_text"] = values.pop("scenes")
    for key in ("scene_prefix", "scene_suffix"):
        values.pop(key)
    return Preset(path=path, scenes=scenes, input_audio_filters=bands, variables=variables,
                  warnings=tuple(warnings), **{k: v for k, v in values.items() if k != "input_audio_filters"})


def load_preset(path, overrides=None):
    """Load and validate a YAML preset file; `overrides` (e.g. from the command line) replace keys."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError([f"{path}: preset file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError([f"{path}: cannot read preset ({exc})"]) from None
    try:
        raw = load_yaml(text)
    except DuplicateKeyError as exc:
        raise PresetError([f"{path}:{exc.line}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PresetError([f"{where}: YAML syntax error: {getattr(exc, 'problem', None) or exc}"]) from None
    if raw is None:
        raw = LineDict()
        raw.lines, raw.line = {}, 1
    if overrides and isinstance(raw, dict):
        for key, value in overrides.items():
            if value is not None:
                raw[key] = value
                raw.lines[key] = None
    return parse_preset(raw, str(path), path.parent, path)
