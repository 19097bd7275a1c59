"""The preset schema: every key defined once (check, default, meaning) as a field of `Preset` or `Band`, and
the one place errors are made.

Keys follow pytti's names where the concept is the same. All problems of a preset are collected
and reported together, each as `file:line: key: message`.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from vj.audio.bands import Band, check_band
from vj.audio.musical import MUSICAL_VARIABLES, hit_name
from vj.audio.sources import AudioError, audio_info
from vj.config_keys import (BOOLEAN, NON_NEGATIVE, PATH, POSITIVE, REQUIRED, TEXT, Check, choice, in_range, key,
                            keys, number, object_schema, optional, ordered_pair)
from vj.expressions import Expression, ExpressionError, compile_expression
from vj.expressions.compiler import did_you_mean
from vj.expressions.functions import BUILTIN_VARIABLES
from vj.preset.yaml_lines import DuplicateKeyError, LineDict, LineList, load_yaml
from vj.scenes import SceneError, parse_scenes

INFILL_MODES = ("mirror", "wrap", "black", "smear")
SAMPLING_MODES = ("nearest", "bilinear", "bicubic")
TRANSITION_MODES = ("linear", "slerp")
TEMPO_SOURCES = ("audio", "link")
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


def _size(value):
    value = number(value, integer=True)
    if value < 64 or value % 8:
        raise ValueError(f"must be a multiple of 8 and at least 64, got {value}")
    return value


def _durations(value):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("expected a number of seconds or a list with one per scene")
    return tuple(POSITIVE.convert(v) for v in values)


def _filter_list(value):
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of {variable_name, f_center, f_width, order}")
    return value


SIZE = Check(_size, {"type": "integer", "minimum": 64, "multipleOf": 8}, "integer, a multiple of 8, ≥ 64")
DURATIONS = Check(_durations, {"type": ["number", "array"], "exclusiveMinimum": 0, "items": POSITIVE.schema,
                               "minItems": 1}, "number > 0, or a list of them")
# Expressions are compiled once the preset's variables are known: convert(source, variables).
EXPRESSION = Check(compile_expression, {"type": ["number", "string"]}, "expression", late=True)
# Items are checked one by one against Band's keys (with lines and name clashes) by _filters.
FILTERS = Check(_filter_list, {"type": "array", "items": object_schema(Band)}, "list of filters (below)")


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A validated preset.

    Each field made with key() is the single definition of a preset key (check, default, meaning): validation,
    README's key table and the JSON Schema read it. After parsing, `scenes` holds the parsed scenes (its text
    is in `scene_text`), path keys hold resolved Paths and expression keys compiled Expressions.
    """

    scenes: list = key(TEXT, REQUIRED, "the scene string: `||` between scenes, `|` between prompts, each "
                                       "`TEXT:WEIGHT` (see Scene grammar in README)")
    scene_prefix: str = key(TEXT, "", "raw text glued before every scene (add your own `|`)")
    scene_suffix: str = key(TEXT, "", "raw text glued after every scene (add your own `|`)")
    scene_duration: tuple = key(DURATIONS, 10, "seconds per scene in renders: one number, or a list with one per "
                                               "scene (the last repeats)")
    transition_time: float = key(NON_NEGATIVE, 1, "seconds over which a scene fades in over the previous one "
                                                  "(its first seconds)")
    transition_mode: str = key(choice(*TRANSITION_MODES), "slerp",
                               "conditioning crossfade: linear, or slerp per token vector")
    duration: float | None = key(optional(POSITIVE), None, "render length in seconds; if not given: the track "
                                                           "from `--start` on, else the scenes' total")
    frames_per_second: float = key(in_range(1, 240), 24, "frames per second")
    width: int = key(SIZE, 512, "frame width in pixels")
    height: int = key(SIZE, 512, "frame height in pixels")
    seed: int = key(in_range(0, 2**63 - 1, integer=True), 0, "random seed")
    input_audio: Path | None = key(optional(PATH), None, "track (wav, flac, ogg, mp3), relative to the preset; "
                                                         "`--audio` replaces it")
    input_audio_offset: float = key(NON_NEGATIVE, 0, "seconds of the track skipped; time 0 of the show is this "
                                                     "point")
    input_audio_filters: tuple = key(FILTERS, (), "bandpass filters; each becomes a variable")
    bpm: float | None = key(optional(in_range(20, 300)), None,
                            "`null`: the tempo follows the audio; a number fixes the tempo (the beat phase still "
                            "follows the audio)")
    tempo_range: tuple = key(ordered_pair(20, 300), [60, 200], "tempo range in BPM: the tempo estimate stays "
                                                               "inside it")
    beats_per_bar: int = key(in_range(1, 16, integer=True), 4, "beats per bar, for `bar_phase`")
    beat_decay: float = key(POSITIVE, 0.1, "seconds: time constant of the decay of the `beat` pulse")
    tempo_source: str = key(choice(*TEMPO_SOURCES), "audio",
                            "`audio`, or `link`: tempo and phase from an Ableton Link session instead of the audio "
                            "(it applies to live shows)")
    model: str = key(TEXT, "stabilityai/sd-turbo", "hub id or local diffusers folder, `tiny`, or `arch:sd-turbo`")
    vae: str = key(TEXT, "auto", "`auto` (the model's VAE), `taesd` (tiny VAE, `madebyollin/taesd`) or a hub "
                                 "id/path")
    steps: int = key(in_range(1, 50, integer=True), 1, "denoising steps per frame (1-4 for Turbo/LCM)")
    strength: Expression = key(EXPRESSION, 0.5, "how much of each frame is re-imagined (clamped to 0.01..1)")
    fixed_noise: bool = key(BOOLEAN, True, "same noise every frame (steadier) or new noise per frame (seed + frame)")
    init_image: Path | None = key(optional(PATH), None, "first frame, relative to the preset; otherwise the first "
                                                        "frame is generated from noise (txt2img)")
    direct_init_weight: Expression = key(EXPRESSION, 0, "*w*: every frame's input is blended toward the init "
                                                        "image by *w*/(1+*w*) (0: none, 1: half, large: mostly init)")
    translate_x: Expression = key(EXPRESSION, 0, "pixels per frame to the right")
    translate_y: Expression = key(EXPRESSION, 0, "pixels per frame down")
    rotate_2d: Expression = key(EXPRESSION, 0, "degrees per frame, counterclockwise")
    zoom_x_2d: Expression = key(EXPRESSION, 0, "pixels per frame of horizontal zoom, positive zooms in (sampling "
                                               "scale (W − zoom)/W, as pytti)")
    zoom_y_2d: Expression = key(EXPRESSION, 0, "pixels per frame of vertical zoom, positive zooms in (sampling "
                                               "scale (H − zoom)/H, as pytti)")
    infill_mode: str = key(choice(*INFILL_MODES), "mirror", "what fills the edges uncovered by motion")
    sampling_mode: str = key(choice(*SAMPLING_MODES), "bicubic", "interpolation of the motion warp")
    path: Path | None = None
    scene_text: str = ""
    variables: tuple = ()
    warnings: tuple = ()

    @property
    def audio_variables(self):
        """The filters' variable names."""
        return tuple(b.variable_name for b in self.input_audio_filters)

    @property
    def input_variables(self):
        """Every variable the audio analysis produces: filters, hits, then the musical variables."""
        return _input_variables(self.input_audio_filters)

    def scene_durations(self):
        """One duration per scene (the last given value repeats)."""
        given = self.scene_duration
        return tuple(given[min(i, len(given) - 1)] for i in range(len(self.scenes)))


FIELDS = keys(Preset)
FILTER_FIELDS = keys(Band)


def _input_variables(bands):
    names = tuple(b.variable_name for b in bands)
    return names + tuple(hit_name(b.variable_name) for b in bands if b.hit) + MUSICAL_VARIABLES


def _own_variables(name, hit):
    """The variables a filter named `name` makes: the name, its hit (with `hit`), and the _prev of each."""
    inputs = (name, hit_name(name)) if hit else (name,)
    return inputs + tuple(f"{v}_prev" for v in inputs)


class _Problems:
    """The problems found in one preset, each `file:line: key: message`."""

    def __init__(self, name):
        self.name = name
        self.items = []

    def add(self, line, key, message):
        where = f"{self.name}:{line}" if line else self.name
        self.items.append((line or 0, f"{where}: {key}: {message}" if key else f"{where}: {message}"))

    def error(self):
        """A PresetError with the problems in file order."""
        return PresetError(text for _, text in sorted(self.items, key=lambda item: item[0]))


def _unknown_key(key, known, where):
    if key in PYTTI_ONLY:
        return f"pytti key '{key}' is not supported by vj; remove it"
    return f"unknown key{did_you_mean(str(key), known) or ''}; valid {where} keys: {', '.join(known)}"


def _line(mapping, key):
    return getattr(mapping, "lines", {}).get(key, getattr(mapping, "line", None))


def _check_fields(raw, specs, problems, prefix=""):
    """Typed values for the keys `specs` from `raw`, with every problem recorded (a bad or missing value takes
    the default, so that checking goes on); the values of late keys (expressions) stay raw."""
    values = {}
    for name in raw:
        if name not in specs:
            problems.add(_line(raw, name), f"{prefix}{name}", _unknown_key(name, list(specs), prefix.rstrip('.') or "preset"))
    for name, spec in specs.items():
        if name not in raw:
            if spec.required:
                problems.add(getattr(raw, "line", None), f"{prefix}{name}", "required key is missing")
            values[name] = spec.typed_default()
        elif spec.check.late:
            values[name] = raw[name]
        else:
            try:
                values[name] = spec.check.convert(raw[name])
            except ValueError as exc:
                problems.add(_line(raw, name), f"{prefix}{name}", str(exc))
                values[name] = spec.typed_default()
    return values


def _clash(name, hit, taken):
    """Why the variables of a filter named `name` clash with those `taken` ({variable: owner}), or None."""
    own = _own_variables(name, hit)
    if name in taken:
        return f"'{name}' is already used by {taken[name]}"
    for variable in own[1:]:
        if variable in taken:
            why = " (hit: true)" if variable.startswith(hit_name(name)) else ""
            return f"'{name}' makes the variable '{variable}'{why}, which is already used by {taken[variable]}"
    return None


def _filters(raw_list, line, problems, audio_rate):
    """Bands from the (list-checked) filter items; each item's keys, name clashes and band edges are checked."""
    musical = f"the musical variables ({', '.join(MUSICAL_VARIABLES)} and their _prev)"
    taken = {v: musical for m in MUSICAL_VARIABLES for v in (m, f"{m}_prev")}
    bands = []
    for i, item in enumerate(raw_list):
        item_line = raw_list.lines[i] if isinstance(raw_list, LineList) else line
        label = f"input_audio_filters[{i}]"
        if not isinstance(item, dict):
            problems.add(item_line, label, "expected a mapping like {variable_name: fLo, f_center: 105, f_width: 65}")
            continue
        before = len(problems.items)
        values = _check_fields(item, FILTER_FIELDS, problems, prefix=f"{label}.")
        name = values["variable_name"]
        if name is not None:
            clash = _clash(name, values["hit"], taken)
            if clash:
                problems.add(_line(item, "variable_name"), f"{label}.variable_name", clash)
            for variable in _own_variables(name, values["hit"]):
                taken.setdefault(variable, label)
        if len(problems.items) > before:
            continue
        band = Band(**values)
        try:  # without a known track only the lower edge can be checked here; render checks the rest
            check_band(band, audio_rate or math.inf)
        except AudioError as exc:
            problems.add(item_line, label, str(exc))
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
    inputs = _input_variables(bands)
    variables = BUILTIN_VARIABLES + inputs + tuple(f"{n}_prev" for n in inputs)

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

    for field_name, spec in FIELDS.items():
        if spec.check.late and field_name in raw:
            try:
                values[field_name] = spec.check.convert(raw[field_name], variables)
            except ExpressionError as exc:
                problems.add(_line(raw, field_name), field_name, str(exc))
                values[field_name] = spec.typed_default()
    if values["init_image"]:
        values["init_image"] = _resolve(values["init_image"], base)
        if not values["init_image"].is_file():
            problems.add(_line(raw, "init_image"), "init_image", f"image file '{values['init_image']}' not found")

    if problems.items:
        raise problems.error()
    scene_text = values["scenes"]
    values.update(scenes=scenes, input_audio_filters=bands)
    return Preset(path=path, scene_text=scene_text, variables=variables, warnings=tuple(warnings), **values)


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
        for name, value in overrides.items():
            if value is not None:
                raw[name] = value
                raw.lines[name] = None
    return parse_preset(raw, str(path), path.parent, path)
