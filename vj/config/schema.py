"""The preset schema: every key defined once (check, default, meaning, area) as a field of `Preset`, `Band`,
`ControlItem`, `GuideImage`, `ControlNetItem` or the MIDI bindings; vj.config.loading checks a file against it.

Keys follow pytti's names where the concept is the same.
"""

import ast
from dataclasses import dataclass
from pathlib import Path


from vj.engine.vocabulary import (
    BORDER_MODES,
    CONTROL_PREPROCESSORS,
    DEFAULT_DEPTH_MODEL,
    INFILL_MODES,
    QUALITIES,
    SAMPLING_MODES,
)
from vj.config.bands import Band
from vj.config.musical import MUSICAL_VARIABLES, hit_name
from vj.config.keys import (
    BOOLEAN,
    NON_NEGATIVE,
    NUMBER,
    PATH,
    POSITIVE,
    POSITIVE_INTEGER,
    REQUIRED,
    TEXT,
    Check,
    choice,
    in_range,
    key,
    keys,
    list_of,
    mapping_of,
    number,
    optional,
    or_auto,
    ordered_pair,
    variable_name,
)
from vj.config.live_keys import CURVES
from vj.config.video_keys import ANIMATION_MODES, ANIMATION_SPELLINGS, STREAM_SCHEMES
from vj.language.expressions import Expression, compile_expression
from vj.language.expressions.compiler import did_you_mean
from vj.config.live_keys import QUANTIZE, MidiSection, NoteBinding
from vj.language.value_ranges import KEY_KINDS, out_of_range

TRANSITION_MODES = ("linear", "slerp", "latent_blend")
TEMPO_SOURCES = ("audio", "link")
MOTION_KEYS = ("translate_x", "translate_y", "rotate_2d", "zoom_x_2d", "zoom_y_2d")
# 3D mode (pytti's zoom_3d): the translations (x and y shared with 2D) and the quaternion, whose expressions may use
# pytti's depth variables of the frame being moved: r (nearest), R (farthest), mu (typical), in pixels
MOTION_3D_KEYS = ("translate_x", "translate_y", "translate_z_3d", "rotate_3d")
DEPTH_VARIABLES = ("r", "R", "mu")


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


def _seed(value):
    """Any integer (pytti's demo seeds are negative or beyond 2**63), as the seed in -2**63..2**63-1 that torch
    takes to the same generator state (torch reads a seed modulo 2**64), so that seed + frame stays a valid seed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return (int(value) + 2**63) % 2**64 - 2**63


SEED = Check(_seed, {"type": "integer"}, "integer (negative too)")
SIZE = Check(_size, {"type": "integer", "minimum": 64, "multipleOf": 8}, "integer, a multiple of 8, ≥ 64")
DURATIONS = Check(
    _durations,
    {"type": ["number", "array"], "exclusiveMinimum": 0, "items": POSITIVE.schema, "minItems": 1},
    "number > 0, or a list of them",
)


def _number_list(item):
    """A list of `item`s (at least one)."""

    def convert(value):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"expected a list of {item.doc}, got {value!r}")
        return tuple(item.convert(v) for v in value)

    return Check(convert, {"type": "array", "items": item.schema, "minItems": 1}, f"list of {item.doc}")


def _image_model(value):
    if value in PIXEL_MODEL_SPELLINGS:
        return PIXEL_MODEL_SPELLINGS[value]
    if isinstance(value, str) and value.strip().lower() == "vqgan":
        raise ValueError(
            "VQGAN is not supported by vj (no VQGAN weights or code); use diffusion, "
            "unlimited_palette or limited_palette"
        )
    return choice(*IMAGE_MODELS).convert(value)


IMAGE_MODELS = ("diffusion", "unlimited_palette", "limited_palette")
PIXEL_MODEL_SPELLINGS = {"Unlimited Palette": "unlimited_palette", "Limited Palette": "limited_palette"}
IMAGE_MODEL = Check(
    _image_model,
    {"type": "string", "enum": [*IMAGE_MODELS, *PIXEL_MODEL_SPELLINGS]},
    ", ".join(f"`{m}`" for m in IMAGE_MODELS),
)


def _animation_mode(value):
    """pytti's animation mode in pytti's spelling. YAML 1.1 reads a bare `off` as false, which is `off` too."""
    if value is False:
        return "off"
    word = value.strip().lower() if isinstance(value, str) else None
    if word in ANIMATION_SPELLINGS:
        return ANIMATION_SPELLINGS[word]
    raise ValueError(
        f"must be one of {', '.join(ANIMATION_MODES)}, got {value!r}{did_you_mean(str(value), ANIMATION_MODES)}"
    )


ANIMATION_MODE = Check(
    _animation_mode,
    {
        "type": ["string", "boolean"],
        "enum": [*ANIMATION_MODES, *(s for s in ANIMATION_SPELLINGS if s not in ANIMATION_MODES), False],
    },
    ", ".join(f"`{m}`" for m in ANIMATION_MODES),
)
VIDEO_PATH = Check(
    TEXT.convert,
    {"type": "string"},
    f"file path or URL ({', '.join(f'`{s}://`' for s in STREAM_SCHEMES)})",
)


def _perceptors(value):
    """One open_clip name or a list of them."""
    return tuple(TEXT.convert(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


PERCEPTORS = Check(
    _perceptors, {"type": ["array", "string"], "items": {"type": "string"}}, "list of open_clip `NAME/TAG`"
)
FLAG = optional(BOOLEAN)
GUIDE_METHODS = ("linear", "threshold", "clustered", "concept")
COMBINED_METHODS = GUIDE_METHODS[:3]  # those that combine, by their largest weight


def _guide_method(value):
    """A guide image's method, or a list of the methods that combine, as a tuple of names."""
    names = list(value) if isinstance(value, (list, tuple)) else [value]
    if not names:
        raise ValueError(f"expected a method or a list of {', '.join(COMBINED_METHODS)}, got []")
    for name in names:
        choice(*GUIDE_METHODS).convert(name)
    if len(names) > 1 and not set(names) <= set(COMBINED_METHODS):
        raise ValueError(f"only {', '.join(COMBINED_METHODS)} combine; concept stands alone")
    if len(set(names)) < len(names):
        raise ValueError(f"each method at most once, got {names}")
    return tuple(names)


GUIDE_METHOD = Check(
    _guide_method,
    {
        "anyOf": [
            {"type": "string", "enum": list(GUIDE_METHODS)},
            {
                "type": "array",
                "items": {"type": "string", "enum": list(COMBINED_METHODS)},
                "minItems": 1,
                "uniqueItems": True,
            },
        ]
    },
    ", ".join(f"`{m}`" for m in GUIDE_METHODS) + " or a list of the first three",
)


# Expressions are compiled once the preset's variables are known: convert(source, variables).
def constant_out_of_range(name, expression):
    """Why a constant key value is outside the range its frames are held to (vj.language.value_ranges), or None."""
    if name not in KEY_KINDS or not expression.is_constant:
        return None
    return out_of_range(KEY_KINDS[name], expression(None))


EXPRESSION = Check(compile_expression, {"type": ["number", "string"]}, "expression", late=True)


def _quaternion(value, variables=()):
    """pytti's rotate_3d, `[w, x, y, z]` (text, as pytti writes it, or a YAML list): four expressions."""
    if isinstance(value, list):
        parts = value
    else:
        text = value.strip() if isinstance(value, str) else ""
        try:
            tree = ast.parse(text, mode="eval").body if text.startswith("[") else None
        except SyntaxError:
            tree = None
        parts = [ast.get_source_segment(text, e) for e in tree.elts] if isinstance(tree, ast.List) else None
    if parts is None or len(parts) != 4:
        raise ValueError(f"expected pytti's quaternion '[w, x, y, z]' (four numbers or expressions), got {value!r}")
    return tuple(compile_expression(part, variables) for part in parts)


QUATERNION = Check(
    _quaternion,
    {"type": ["string", "array"], "items": {"type": ["number", "string"]}, "minItems": 4, "maxItems": 4},
    "quaternion `[w, x, y, z]` of expressions",
    late=True,
)
MUSICAL_NAMES = (MUSICAL_VARIABLES, f"a musical variable: {', '.join(MUSICAL_VARIABLES)}")


@dataclass(frozen=True)
class ControlItem:
    """One item of `controls` as written in a preset; parse_preset makes it a ControlSpec."""

    name: str = key(
        variable_name(MUSICAL_NAMES),
        REQUIRED,
        "name of the variable in expressions; `NAME_prev` comes with it, and neither may clash with another variable",
    )
    default: float | None = key(
        optional(NUMBER), None, "its value when a show starts, and in renders; `null`: the low end of `range`"
    )
    range: tuple = key(ordered_pair(), [0, 1], "[lo, hi]: the values it takes")
    curve: str = key(
        choice(*CURVES),
        "linear",
        "knob position p (0..1) to value: `linear` lo + p·(hi − lo); `exponential` lo·(hi/lo)^p, for "
        "speeds and frequencies (needs 0 < lo); `square` lo + p²·(hi − lo), fine near lo",
    )


@dataclass(frozen=True)
class GuideImage:
    """One item of `guide_images`: a picture whose CLIP image embedding is mixed into every scene's conditioning."""

    image: str = key(PATH, REQUIRED, "the picture, relative to the preset")
    method: tuple = key(
        GUIDE_METHOD,
        "linear",
        "which tokens take the image: `linear` (a ramp from the back of the prompt, where style "
        "sits, to the front), `threshold` (tokens at least `threshold` similar), `clustered` (each "
        "local peak of similarity at or above the average, falling to the midpoints between "
        "peaks), `concept` (tokens of the prompt that match the `concept` prompt); a list such as "
        "`[linear, clustered, threshold]` takes each token's largest weight",
    )
    strength: Expression = key(EXPRESSION, 0.3, "how much of the image a token takes, at most (an expression)")
    mapping: str = key(
        choice("tokens", "pooled"),
        "tokens",
        "linear / threshold / clustered: `tokens` moves each prompt token toward the image token "
        "that fits it best; `pooled` toward the one pooled image embedding",
    )
    threshold: float | str = key(
        or_auto(in_range(-1, 1)),
        "auto",
        "threshold: the similarity a token needs (0..1, softmax over the prompt's "
        "tokens), `auto` the average; concept: the cosine with the concept's words, "
        "`auto` 0.2",
    )
    concept: str = key(TEXT, "", "concept: the prompt that selects which tokens map (required with `concept`)")
    bos_cap: float = key(in_range(0, 1), 0.15, "the most the first token (BOS) takes: more gives noise (about 0.35)")


@dataclass(frozen=True)
class ControlNetItem:
    """One item of `controlnets`: a ControlNet steering every frame's structure with a control map."""

    model: str = key(
        TEXT,
        REQUIRED,
        "the ControlNet: a hub id or local diffusers folder that fits the model (SD 2.1-based nets for "
        "stabilityai/sd-turbo); `tiny` and `arch:sd21` (random weights) as for the model; with --model tiny every "
        "net is `tiny`, with arch:sd-turbo `arch:sd21`",
    )
    image: str = key(
        TEXT,
        REQUIRED,
        "the control image: `video` (the Video Source frame), `previous` (the previous frame moved by this frame's "
        "motion), or a picture or video file relative to the preset (a video plays from the show's start, looped)",
    )
    preprocessor: str = key(
        choice(*CONTROL_PREPROCESSORS),
        "none",
        "how the image becomes the control map: `none` (it is one already), `canny` (edges as OpenCV's Canny), "
        "`depth` (inverse depth by `depth_model`, near white)",
    )
    scale: Expression = key(
        EXPRESSION, 1, "the net's weight, an expression held to 0..10 (diffusers' conditioning scale)"
    )
    start: float = key(in_range(0, 1), 0, "the fraction of the denoising steps where the net starts acting")
    end: float = key(in_range(0, 1), 1, "the fraction of the steps where it stops (more than `start`)")
    low_threshold: float = key(NON_NEGATIVE, 100, "canny: edges weaker than this are dropped (OpenCV's units)")
    high_threshold: float = key(
        NON_NEGATIVE, 200, "canny: edges at least this strong start a line (weaker ones join when connected)"
    )
    invert: bool = key(
        BOOLEAN,
        False,
        "the map's black and white swapped after the preprocessor (a dark logo on white for a net "
        "that wants white lines on black)",
    )
    video_file: bool = False  # parsed: `image` is a video file (decoded at show time), not a picture

    @property
    def options(self):
        """The preprocessor's options as (name, value) pairs (vj.engine.diffusion.control_maps.ControlInput)."""
        pairs = (("invert", self.invert),)
        if self.preprocessor == "canny":
            pairs += (("low_threshold", self.low_threshold), ("high_threshold", self.high_threshold))
        return pairs


# Items are checked one by one against their dataclass's keys (with lines and name clashes) by _filters,
# _controls and _midi.
FILTERS = list_of(Band, "list of filters (below)", "{variable_name, f_center, f_width, order}")
CONTROLS = list_of(
    ControlItem, "list of `{name, default, range, curve}`", "{name: zoom, default: 0.5, range: [0, 1], curve: linear}"
)
GUIDE_IMAGES = list_of(
    GuideImage, "list of `{image, method, strength, ...}` (below)", "{image: ref.png, method: linear, strength: 0.3}"
)
CONTROLNETS = list_of(
    ControlNetItem,
    "list of `{model, image, preprocessor, scale, ...}` (below)",
    "{model: thibaud/controlnet-sd21-canny-diffusers, image: logo.png, preprocessor: canny, scale: fLo}",
)
MIDI = mapping_of(
    MidiSection,
    "`{cc: [{channel, cc, control}], notes: [{channel, note, action, scene}]}`",
    "{cc: [{channel: 1, cc: 21, control: zoom}], notes: [{note: 36, action: next_scene}]}",
)


# The areas of a preset, in README's order, with their titles there: each key names its one area (key(area=...)).
# Preset files stay flat; a consumer takes a whole area with `preset.area(name)`.
AREAS = {
    "scenes": "Scenes",
    "transitions": "Transitions between scenes",
    "output": "Output (length, frame rate, size, seed)",
    "audio": "Audio (the track and its filters)",
    "beats": "Beats and tempo",
    "live": "Live shows",
    "diffusion": "Image model and diffusion",
    "init": "Init image",
    "guidance": "CLIP guidance",
    "cutouts": "CLIP guidance cutouts",
    "pixels": "Pixel models (`unlimited_palette`, `limited_palette`)",
    "motion": "Motion",
    "camera": "3D motion (pytti's `animation_mode: 3D`)",
    "video": "Video Source (pytti's `animation_mode: Video Source`)",
}


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A validated preset.

    Each field made with key() is the single definition of a preset key (check, default, meaning, area):
    validation, README's key tables and the JSON Schema read it. After parsing, `scenes` holds the parsed scenes
    (its text is in `scene_text`), path keys hold resolved Paths and expression keys compiled Expressions.
    """

    scenes: list = key(
        TEXT,
        REQUIRED,
        "the scene string: `||` between scenes, `|` between prompts, each `TEXT:WEIGHT` (see Scene grammar in README)",
        area="scenes",
    )
    scene_prefix: str = key(TEXT, "", "raw text glued before every scene (add your own `|`)", area="scenes")
    scene_suffix: str = key(TEXT, "", "raw text glued after every scene (add your own `|`)", area="scenes")
    scene_duration: tuple = key(
        DURATIONS,
        10,
        "seconds per scene in renders: one number, or a list with one per scene (the last repeats)",
        area="scenes",
    )
    transition_time: float = key(
        NON_NEGATIVE,
        1,
        "seconds over which a scene fades in over the previous one (its first seconds)",
        area="transitions",
    )
    transition_mode: str = key(
        choice(*TRANSITION_MODES),
        "slerp",
        "conditioning crossfade: linear, or slerp per token vector; `latent_blend`: the slerp "
        "crossfade guided by a latent-blending tree between the scenes, computed ahead and "
        "cached (see Transitions in README)",
        area="transitions",
    )
    transition_quality: str = key(
        choice(*QUALITIES),
        "medium",
        "latent_blend: the tree's size, from `lowest` (5 frames) to `ultra` (33)",
        area="transitions",
    )
    transition_depth: float = key(
        in_range(0, 1),
        0.5,
        "latent_blend `depth_strength`: near 0 the branches start from noise (creative, "
        "new things may appear), near 1 late (close to an alpha blend)",
        area="transitions",
    )
    transition_steps: int = key(
        in_range(1, 50, integer=True), 4, "latent_blend: denoising steps of the tree's trajectories", area="transitions"
    )
    transition_branches: tuple | None = key(
        optional(_number_list(in_range(0, 64, integer=True))),
        None,
        "latent_blend: branches per level, with `transition_injections` (replaces `transition_quality`)",
        area="transitions",
    )
    transition_injections: tuple | None = key(
        optional(_number_list(in_range(0, 1))),
        None,
        "latent_blend: injection strength per level (fraction of the steps 0..1, increasing)",
        area="transitions",
    )
    transition_budget: float | None = key(
        optional(POSITIVE),
        None,
        "latent_blend: seconds of compute for the branches (replaces `transition_quality`: as many branches as fit)",
        area="transitions",
    )
    transition_crossfeed_power: float | None = key(
        optional(in_range(0, 1)),
        None,
        "latent_blend parental crossfeed: how far each branch's latent "
        "is pulled toward its parents' before a step (1: replaced); "
        "`null`: latent blending's default, 1 for turbo models, else 0.3",
        area="transitions",
    )
    transition_crossfeed_range: float | None = key(
        optional(in_range(0, 1)),
        None,
        "latent_blend parental crossfeed: the fraction of the steps it acts in; `null`: 1 for turbo models, else 0.6",
        area="transitions",
    )
    transition_crossfeed_decay: float | None = key(
        optional(in_range(0, 1)),
        None,
        "latent_blend parental crossfeed: the power at the end of the "
        "range, as a fraction of it; `null`: 1 for turbo models, else 0.9",
        area="transitions",
    )
    transition_guide: float = key(
        in_range(0, 1),
        0.8,
        "latent_blend: how strongly the tree's frames pull the stream in the middle of a transition (0 at both ends)",
        area="transitions",
    )
    scene_quantize: str = key(
        choice(*QUANTIZE),
        "none",
        "live shows: a scene change waits for the next beat or bar (`none`: it starts at once)",
        area="live",
    )
    duration: float | None = key(
        optional(POSITIVE),
        None,
        "render length in seconds; if not given: the track from `--start` on, else the scenes' total",
        area="output",
    )
    frames_per_second: float = key(in_range(1, 240), 24, "frames per second", area="output")
    width: int = key(SIZE, 512, "frame width in pixels", area="output")
    height: int = key(SIZE, 512, "frame height in pixels", area="output")
    seed: int = key(
        SEED,
        0,
        "random seed; torch takes it modulo 2^64, so a seed outside −2^63..2^63−1 is the one in that range equal to "
        "it modulo 2^64; `null` or pytti's `${now:%f}`: a random seed, which `vj check` prints (write it here to "
        "repeat a render)",
        area="output",
    )
    input_audio: Path | None = key(
        optional(PATH), None, "track (wav, flac, ogg, mp3), relative to the preset; `--audio` replaces it", area="audio"
    )
    input_audio_offset: float = key(
        NON_NEGATIVE, 0, "seconds of the track skipped; time 0 of the show is this point", area="audio"
    )
    input_audio_filters: tuple = key(FILTERS, (), "bandpass filters; each becomes a variable", area="audio")
    bpm: float | None = key(
        optional(in_range(20, 300)),
        None,
        "`null`: the tempo follows the audio; a number fixes the tempo (the beat phase still follows the audio)",
        area="beats",
    )
    tempo_range: tuple = key(
        ordered_pair(20, 300), [60, 200], "tempo range in BPM: the tempo estimate stays inside it", area="beats"
    )
    beats_per_bar: int = key(in_range(1, 16, integer=True), 4, "beats per bar, for `bar_phase`", area="beats")
    beat_decay: float = key(POSITIVE, 0.1, "seconds: time constant of the decay of the `beat` pulse", area="beats")
    tempo_source: str = key(
        choice(*TEMPO_SOURCES),
        "audio",
        "`audio`, or `link`: tempo and phase from an Ableton Link session instead of the audio "
        "(it applies to live shows)",
        area="live",
    )
    controls: tuple = key(
        CONTROLS,
        (),
        "control variables set live (MIDI knobs, OSC): each makes the variable "
        "`name` (and `name_prev`) for every expression; `range` [lo, hi] (default "
        "[0, 1]), `default` (default lo), `curve` `linear`, `exponential` (needs "
        "0 < lo) or `square`; renders use the defaults",
        area="live",
    )
    midi: MidiSection | None = key(
        optional(MIDI),
        None,
        "MIDI bindings for live shows: each `cc` item sets a control from a knob (channel "
        "1-16, default 1; cc 0-127); each `notes` item triggers `next_scene`, "
        "`previous_scene`, `scene` or `queue` (with `scene: N`, 1 = the first), "
        "`blackout`, `freeze`, `tap_tempo`, `downbeat` or `hud`. Knobs bound by MIDI "
        "learn are kept in `NAME.midi.yaml` beside the preset and replace these",
        area="live",
    )
    model: str = key(
        TEXT, "stabilityai/sd-turbo", "hub id or local diffusers folder, `tiny`, or `arch:sd-turbo`", area="diffusion"
    )
    vae: str = key(
        TEXT,
        "auto",
        "`auto` (the model's VAE), `taesd` (tiny VAE, `madebyollin/taesd`) or a hub id/path",
        area="diffusion",
    )
    steps: int = key(
        in_range(1, 50, integer=True), 1, "denoising steps per frame (1-4 for Turbo/LCM)", area="diffusion"
    )
    strength: Expression = key(
        EXPRESSION, 0.5, "how much of each frame is re-imagined (clamped to 0.01..1)", area="diffusion"
    )
    fixed_noise: bool = key(
        BOOLEAN, True, "same noise every frame (steadier) or new noise per frame (seed + frame)", area="diffusion"
    )
    init_image: Path | None = key(
        optional(PATH),
        None,
        "first frame, a file relative to the preset or an http(s) URL (downloaded when a show starts); otherwise the "
        "first frame is generated from noise (txt2img)",
        area="init",
    )
    direct_init_weight: Expression = key(
        EXPRESSION,
        0,
        "*w*: every frame's input is blended toward the init "
        "image by *w*/(1+*w*) (0: none, 1: half, large: mostly init)",
        area="init",
    )
    semantic_init_weight: Expression = key(
        EXPRESSION,
        0,
        "CLIP guidance: the init image as a semantic image prompt in every scene (keeps what it depicts, not where)",
        area="init",
    )
    image_model: str = key(
        IMAGE_MODEL,
        "diffusion",
        "`diffusion` (the frame engine), or pytti's pixel models without diffusion: "
        "`unlimited_palette` (RGB pixels) or `limited_palette` (palettes × palette_size colours), "
        "optimized by CLIP guidance (pytti's spellings `Unlimited Palette`, `Limited Palette` "
        "are accepted)",
        area="diffusion",
    )
    perceptors: tuple = key(
        PERCEPTORS,
        [],
        "CLIP guidance models, open_clip `NAME/TAG` (e.g. `ViT-B-32/openai`, "
        "`ViT-B-16/laion2b_s34b_b88k`); the pytti flags below add theirs; none "
        "given: `ViT-B-32/openai` when guidance is used",
        area="guidance",
    )
    clip_guidance_scale: Expression = key(
        EXPRESSION,
        1,
        "diffusion: how far each CLIP gradient step moves the frame's latent (0: no guidance)",
        area="guidance",
    )
    clip_guidance_steps: int = key(
        in_range(0, 50, integer=True),
        1,
        "diffusion: CLIP gradient steps per denoising step, through the VAE decoder (0: "
        "none; only when guidance is used)",
        area="guidance",
    )
    cutouts: int = key(
        in_range(1, 512, integer=True), 40, "CLIP guidance: crops per perceptor per step", area="cutouts"
    )
    cut_pow: float = key(POSITIVE, 2, "cutout size power: larger makes smaller crops", area="cutouts")
    cutout_border: float = key(
        in_range(0, 1), 0.25, "how far a crop may stick out of the frame (fraction of its side)", area="cutouts"
    )
    border_mode: str = key(choice(*BORDER_MODES), "clamp", "what fills a crop outside the frame", area="cutouts")
    augmentations: bool = key(
        BOOLEAN,
        True,
        "pytti's cutout augmentations (flip, affine, perspective, colour jitter, erasing, noise)",
        area="cutouts",
    )
    gradient_accumulation_steps: int = key(
        in_range(1, 512, integer=True),
        1,
        "cutouts scored in this many batches (less memory; must divide `cutouts`)",
        area="cutouts",
    )
    direct_image_prompts: str = key(
        TEXT,
        "",
        "pixel-loss image prompts for every scene, `path:WEIGHT:STOP` (pytti's form) or `[path]:WEIGHT:STOP` separated "
        "by `|`; a path may be an http(s) URL (masks as in scenes)",
        area="guidance",
    )
    direct_stabilization_weight: Expression = key(
        EXPRESSION,
        0,
        "CLIP guidance: pixel loss toward the warped previous frame (Video Source: the video frame)",
        area="guidance",
    )
    semantic_stabilization_weight: Expression = key(
        EXPRESSION,
        0,
        "CLIP guidance: the warped previous frame (Video Source: the video frame) as a semantic image prompt",
        area="guidance",
    )
    edge_stabilization_weight: Expression = key(
        EXPRESSION,
        0,
        "CLIP guidance: loss on the Sobel edges of the warped previous frame (Video Source: the video frame)",
        area="guidance",
    )
    depth_stabilization_weight: Expression = key(
        EXPRESSION,
        0,
        "CLIP guidance: loss between the depth of the frame and the depth of the warped previous frame (Video "
        "Source: the video frame), by `depth_model`",
        area="guidance",
    )
    smoothing_weight: Expression = key(
        EXPRESSION, 0, "CLIP guidance: total variation (smooths; negative adds detail)", area="guidance"
    )
    steps_per_frame: int = key(
        in_range(1, 1000, integer=True), 50, "pixel models: optimizer steps per frame", area="pixels"
    )
    pixel_size: int = key(
        in_range(1, 64, integer=True),
        1,
        "pytti's pixel size: pixel models optimize a picture this many times smaller than the frame and show each of "
        "its pixels as a block; diffusion renders that much smaller (a multiple of 8, at least 64) and is scaled up "
        "by nearest neighbour",
        area="pixels",
    )
    learning_rate: float | None = key(
        optional(POSITIVE), None, "pixel models: Adam's learning rate (`null`: the model's default)", area="pixels"
    )
    reset_lr_each_frame: bool = key(BOOLEAN, True, "pixel models: a fresh optimizer every frame", area="pixels")
    palette_size: int = key(in_range(1, 255, integer=True), 6, "limited_palette: colours per palette", area="pixels")
    palettes: int = key(in_range(1, 255, integer=True), 9, "limited_palette: number of palettes", area="pixels")
    gamma: float = key(POSITIVE, 1, "limited_palette: gamma of the palette colours", area="pixels")
    hdr_weight: float = key(NUMBER, 0.01, "limited_palette: weight of the loss keeping colours in range", area="pixels")
    palette_normalization_weight: float = key(
        NUMBER, 0.2, "limited_palette: weight of the palette normalization loss", area="pixels"
    )
    random_initial_palette: bool = key(BOOLEAN, False, "limited_palette: start from random colours", area="pixels")
    target_palette: Path | None = key(
        optional(PATH),
        None,
        "limited_palette: a picture whose colours seed the palette, relative to the preset",
        area="pixels",
    )
    lock_palette: bool = key(BOOLEAN, False, "limited_palette: keep the palette fixed", area="pixels")
    show_palette: bool = key(BOOLEAN, False, "limited_palette: draw the palette on the frames", area="pixels")
    guide_images: tuple = key(
        GUIDE_IMAGES,
        (),
        "pictures whose CLIP image embedding is mixed into every scene's "
        "conditioning token by token (diffusion; see Embedding editing in "
        "README)",
        area="diffusion",
    )
    controlnets: tuple = key(
        CONTROLNETS,
        (),
        "ControlNets keeping the frames' structure (edges, depth) to a picture, a video or the previous frame "
        "(diffusion; see ControlNet in README)",
        area="diffusion",
    )
    ViTB32: bool | None = key(
        FLAG,
        None,
        "pytti flag: `true` adds the perceptor `ViT-B-32/openai`, `false` keeps it out of the default",
        area="guidance",
    )
    ViTB16: bool | None = key(FLAG, None, "pytti flag: `ViT-B-16/openai`", area="guidance")
    ViTL14: bool | None = key(FLAG, None, "pytti flag: `ViT-L-14/openai`", area="guidance")
    ViTL14_336px: bool | None = key(FLAG, None, "pytti flag: `ViT-L-14-336/openai`", area="guidance")
    RN50: bool | None = key(FLAG, None, "pytti flag: `RN50/openai`", area="guidance")
    RN101: bool | None = key(FLAG, None, "pytti flag: `RN101/openai`", area="guidance")
    RN50x4: bool | None = key(FLAG, None, "pytti flag: `RN50x4/openai`", area="guidance")
    RN50x16: bool | None = key(FLAG, None, "pytti flag: `RN50x16/openai`", area="guidance")
    RN50x64: bool | None = key(FLAG, None, "pytti flag: `RN50x64/openai`", area="guidance")
    translate_x: Expression = key(EXPRESSION, 0, "pixels per frame to the right", area="motion")
    translate_y: Expression = key(EXPRESSION, 0, "pixels per frame up (as pytti)", area="motion")
    rotate_2d: Expression = key(EXPRESSION, 0, "degrees per frame, counterclockwise", area="motion")
    zoom_x_2d: Expression = key(
        EXPRESSION,
        0,
        "pixels per frame of horizontal zoom, positive zooms in (sampling scale (W − zoom)/W, as pytti)",
        area="motion",
    )
    zoom_y_2d: Expression = key(
        EXPRESSION,
        0,
        "pixels per frame of vertical zoom, positive zooms in (sampling scale (H − zoom)/H, as pytti)",
        area="motion",
    )
    infill_mode: str = key(choice(*INFILL_MODES), "mirror", "what fills the edges uncovered by motion", area="motion")
    sampling_mode: str = key(choice(*SAMPLING_MODES), "bicubic", "interpolation of the motion warp", area="motion")
    translate_z_3d: Expression = key(
        EXPRESSION,
        0,
        "3D: pixels per frame toward the viewer (the camera flies in); with translate_x/translate_y, the expressions "
        "may use r, R and mu, the depth of the frame's nearest, farthest and typical point in pixels",
        area="camera",
    )
    rotate_3d: tuple = key(
        QUATERNION,
        "[1, 0, 0, 0]",
        "3D: the camera's turn per frame, a quaternion `[w, x, y, z]` of expressions, applied as written (not "
        "normalised, as pytti: `[cos(a), sin(a), 0, 0]` turns by 2a about the x axis)",
        area="camera",
    )
    field_of_view: float = key(in_range(1, 179), 60, "3D: the vertical field of view in degrees", area="camera")
    near_plane: float = key(
        POSITIVE, 1, "3D: the depth in pixels that the nearest depth (1 mm) maps onto", area="camera"
    )
    far_plane: float = key(POSITIVE, 10000, "3D: the depth in pixels that 10 m and beyond map onto", area="camera")
    lock_camera: bool = key(
        BOOLEAN, True, "3D: take the mean motion out of each frame, so only parallax moves the picture", area="camera"
    )
    depth_model: str = key(
        TEXT,
        DEFAULT_DEPTH_MODEL,
        "3D and depth stabilization: a transformers depth-estimation model (hub id or local folder), `tiny` "
        "(random weights, tests) or `arch:depth-anything-small` (random weights, benchmarks)",
        area="camera",
    )
    depth_input_size: int = key(
        in_range(56, 1022, integer=True),
        518,
        "3D and depth stabilization: the size in pixels the depth model sees the frame at (usually its shorter "
        "side; a multiple of 14): 518 is Depth Anything's own, 266 costs about a quarter",
        area="camera",
    )
    animation_mode: str = key(
        ANIMATION_MODE,
        "off",
        "`off` and `2D` are the same in vj: each frame starts from the previous one, warped by the motion keys "
        "(pytti's `off` ignores them); `Video Source`: each frame's input takes the frame of the video at "
        "`video_path` (or `vj live --video-in`), and stabilization targets it (see Video Source in README); "
        "`3D`: the previous frame moved in 3D by its depth (`depth_model`) and the 3D keys; pytti's spellings "
        "(`2d`, `3d`, `video source`, `video_source`) are accepted",
        area="video",
    )
    video_path: str = key(
        VIDEO_PATH,
        "",
        "Video Source: the video, a file relative to the preset or a stream URL; `vj live --video-in` replaces it",
        area="video",
    )
    frame_stride: int = key(
        POSITIVE_INTEGER,
        1,
        "Video Source: video frames advanced per output frame (the video plays this many times faster)",
        area="video",
    )
    reencode_each_frame: bool = key(
        BOOLEAN,
        True,
        "Video Source: each frame's input is the video frame itself (img2img of the video; pixel models "
        "re-encode it); `false`: the previous frame, warped by the motion keys, mixed with the video by "
        "`video_weight`. A cut in the video (and its first frame) re-encodes either way",
        area="video",
    )
    video_weight: Expression = key(
        EXPRESSION,
        0.5,
        "Video Source with `reencode_each_frame: false`: how much of the video frame goes into each frame's "
        "input, held to 0..1 (1: the video alone, as `reencode_each_frame`; 0: the previous frame alone, "
        "the video steering only stabilization)",
        area="video",
    )
    video_loop: bool = key(
        BOOLEAN,
        False,
        "Video Source: a video shorter than the render starts again (`false`: its last frame holds)",
        area="video",
    )
    path: Path | None = None
    scene_text: str = ""
    variables: tuple = ()
    warnings: tuple = ()
    video_problem: str | None = None  # Video Source without video_path: `file:line: key: message`, said when shown
    audio_problem: str | None = None  # input_audio's file is missing: `file:line: key: message`, said by a render

    @property
    def audio_variables(self):
        """The filters' variable names."""
        return tuple(b.variable_name for b in self.input_audio_filters)

    @property
    def input_variables(self):
        """Every variable the audio analysis produces: filters, hits, then the musical variables."""
        return input_variables_of(self.input_audio_filters)

    @property
    def control_names(self):
        """The control variables' names (their values come from the show's Controls, or their defaults)."""
        return tuple(c.name for c in self.controls)

    @property
    def makes_frames(self):
        """What makes the frames, as summaries say it: 'diffusion model NAME' or 'image model NAME'."""
        if self.image_model == "diffusion":
            return f"diffusion model {self.model}"
        return f"image model {self.image_model}"

    def scene_durations(self):
        """One duration per scene (the last given value repeats)."""
        given = self.scene_duration
        return tuple(given[min(i, len(given) - 1)] for i in range(len(self.scenes)))

    def area(self, name):
        """{key: value} of the keys of area `name` (AREAS), in declaration order: settings built from a whole area
        get a key added to it without another hand copy."""
        return {field_name: getattr(self, field_name) for field_name in AREA_KEYS[name]}


FIELDS = keys(Preset)
AREA_KEYS = {area: tuple(name for name, spec in FIELDS.items() if spec.area == area) for area in AREAS}
FILTER_FIELDS = keys(Band)
CONTROL_FIELDS = keys(ControlItem)
MIDI_FIELDS = keys(MidiSection)
NOTE_FIELDS = keys(NoteBinding)
GUIDE_FIELDS = keys(GuideImage)
CONTROLNET_FIELDS = keys(ControlNetItem)


def input_variables_of(bands):
    names = tuple(b.variable_name for b in bands)
    return names + tuple(hit_name(b.variable_name) for b in bands if b.hit) + MUSICAL_VARIABLES
