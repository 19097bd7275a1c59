"""Loading a preset: YAML with lines, every key checked against its one definition (vj.config.schema), all
problems collected and reported together, each as `file:line: key: message`, and the `Preset` made."""

import dataclasses
import re
from pathlib import Path

import yaml

from vj.config.bands import Band, check_band
from vj.config.musical import MUSICAL_VARIABLES, hit_name
from vj.config.remote_files import RemoteFileError, fetch, is_url, url_problem
from vj.config.tracks import audio_info
from vj.errors import AudioError, VjError
from vj.config.live_keys import ControlSpec
from vj.language.expressions import ExpressionError
from vj.language.expressions.compiler import did_you_mean
from vj.language.expressions.functions import BUILTIN_VARIABLES
from vj.config.live_keys import CC_FIELDS, SCENE_ACTIONS, CCBinding, MidiSection, NoteBinding
from vj.config.pytti import PYTTI_KEYS, is_overlay, translate
from vj.config.yaml_lines import DuplicateKeyError, LineDict, LineList, load_yaml
from vj.config.video_keys import CAMERA_PREFIX, NDI_PREFIX, STREAM_SCHEMES, scheme_of
from vj.language.scenes import SceneError, bracket_image_paths, parse_scenes, split_scenes
from vj.engine.diffusion.net_fit import name_problem, net_for_model, preset_fit_problem
from vj.engine.vocabulary import CONTROL_IMAGES
from vj.language.value_ranges import out_of_range
from vj.config.schema import (
    CONTROL_FIELDS,
    CONTROLNET_FIELDS,
    DEPTH_VARIABLES,
    EXPRESSION,
    FIELDS,
    FILTER_FIELDS,
    GUIDE_FIELDS,
    MIDI_FIELDS,
    MOTION_3D_KEYS,
    NOTE_FIELDS,
    ControlNetItem,
    GuideImage,
    Preset,
    constant_out_of_range,
    input_variables_of,
)


class PresetError(VjError):
    """A preset that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _own_variables(name, hit=False):
    """The variables a filter or control named `name` makes: the name, its hit (with `hit`), and the _prev of
    each."""
    inputs = (name, hit_name(name)) if hit else (name,)
    return inputs + tuple(f"{v}_prev" for v in inputs)


class _Problems:
    """The problems found in one preset, each `file:line: key: message`."""

    def __init__(self, name):
        self.name = name
        self.items = []
        self.listed = set()  # the groups of keys whose valid keys a message has listed (once per file)
        self.keys = set()  # the keys named by a problem

    def add(self, line, key, message):
        self.keys.add(key)
        where = f"{self.name}:{line}" if line else self.name
        self.items.append((line or 0, f"{where}: {key}: {message}" if key else f"{where}: {message}"))

    def error(self):
        """A PresetError with the problems in file order."""
        return PresetError(text for _, text in sorted(self.items, key=lambda item: item[0]))


def _folded(name):
    return re.sub(r"[\s_\-/]", "", name.lower())


def _edits(a, b):
    """The edit distance of two words, a swap of neighbours counting as one edit (optimal string alignment)."""
    row2, row = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev2, prev, row = row2, row, [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        row2 = prev
    return row[-1]


def near_spelling(name, candidates):
    """The candidate `name` is a misspelling of, or None: the same letters but for case, `_`, `-` and `/`, or one
    or two edits away (one for short names), so that a different key is never offered (`breath_mode` is not
    `depth_model`)."""
    folded = _folded(name)
    limit = 1 if len(folded) <= 5 else 2
    scored = sorted((_edits(folded, _folded(c)), i, c) for i, c in enumerate(candidates))
    return scored[0][2] if scored and scored[0][0] <= limit else None


def _unknown_key(key, known, where, problems):
    """An unknown key's message: a near spelling of a vj key (or of a pytti key vj translates, at the top level) is
    suggested; the valid keys are listed once per file and group."""
    pytti = PYTTI_KEYS if where == "preset" else ()
    near = near_spelling(str(key), [*known, *pytti])
    hint = ""
    if near is not None:
        hint = f" (did you mean '{near}'?)" if near in known else f" (did you mean pytti's '{near}'?)"
    if where in problems.listed:
        return f"unknown key{hint}"
    problems.listed.add(where)
    return f"unknown key{hint}; valid {where} keys: {', '.join(known)}"


def _line(mapping, key):
    return getattr(mapping, "lines", {}).get(key, getattr(mapping, "line", None))


def _check_fields(raw, specs, problems, prefix=""):
    """Typed values for the keys `specs` from `raw`, with every problem recorded (a bad or missing value takes
    the default, so that checking goes on); the values of late keys (expressions) stay raw."""
    values = {}
    for name in raw:
        if name not in specs:
            problems.add(
                _line(raw, name),
                f"{prefix}{name}",
                _unknown_key(name, list(specs), prefix.rstrip(".") or "preset", problems),
            )
    for name, spec in specs.items():
        if name not in raw:
            if spec.required and f"{prefix}{name}" not in problems.keys:
                # a top-level key is missing from the whole file: no line to point at
                problems.add(
                    getattr(raw, "line", None) if prefix else None, f"{prefix}{name}", "required key is missing"
                )
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
    """Why the variables of a filter or control named `name` clash with those `taken` ({variable: owner}), or
    None."""
    own = _own_variables(name, hit)
    if name in taken:
        return f"'{name}' is already used by {taken[name]}"
    for variable in own[1:]:
        if variable in taken:
            why = " (hit: true)" if variable.startswith(hit_name(name)) else ""
            return f"'{name}' makes the variable '{variable}'{why}, which is already used by {taken[variable]}"
    return None


def _items(raw_list, line, label, fields, problems, example):
    """(label[i], item, its line, typed values, whether its keys are valid) for each mapping in a (list-checked)
    list; its keys are checked against `fields` with their lines, and items that are not mappings are reported."""
    for i, item in enumerate(raw_list):
        where = f"{label}[{i}]"
        item_line = raw_list.lines[i] if isinstance(raw_list, LineList) else line
        if not isinstance(item, dict):
            problems.add(item_line, where, f"expected a mapping like {example}")
            continue
        before = len(problems.items)
        values = _check_fields(item, fields, problems, prefix=f"{where}.")
        yield where, item, item_line, values, len(problems.items) == before


def _claim(name, hit, item, label, taken, problems, key="variable_name"):
    """Record the variables of a filter or control in `taken`; False (and a problem) if they clash."""
    clash = _clash(name, hit, taken)
    if clash:
        problems.add(_line(item, key), f"{label}.{key}", clash)
    for variable in _own_variables(name, hit):
        taken.setdefault(variable, label)
    return clash is None


def _filters(raw_list, line, problems, audio_rate, taken):
    """Bands from the (list-checked) filter items; each item's keys, name clashes and band edges are checked."""
    bands = []
    items = _items(
        raw_list,
        line,
        "input_audio_filters",
        FILTER_FIELDS,
        problems,
        "{variable_name: fLo, f_center: 105, f_width: 65}",
    )
    for label, item, item_line, values, ok in items:
        if values["variable_name"] is not None:
            ok = _claim(values["variable_name"], values["hit"], item, label, taken, problems) and ok
        if not ok:
            continue
        band = Band(**values)
        try:  # without a known track only the lower edge can be checked here; render checks the rest
            check_band(band, audio_rate or None)
        except AudioError as exc:
            problems.add(item_line, label, str(exc))
        bands.append(band)
    return tuple(bands)


def _controls(raw_list, line, problems, taken):
    """(ControlSpecs, names) from the (list-checked) `controls` items: keys, name clashes, range and default
    checked. `names` also has the names of items with other problems, so that expressions using them are not
    reported too."""
    specs, names = [], []
    items = _items(
        raw_list, line, "controls", CONTROL_FIELDS, problems, "{name: zoom, default: 0.5, range: [0, 1], curve: linear}"
    )
    for label, item, _, values, ok in items:
        if values["name"] is not None:
            if _claim(values["name"], False, item, label, taken, problems, key="name"):
                names.append(values["name"])
            else:
                ok = False
        if not ok:
            continue
        (lo, hi), default, curve = values["range"], values["default"], values["curve"]
        default = lo if default is None else default
        if curve == "exponential" and lo <= 0:
            problems.add(
                _line(item, "range"), f"{label}.range", f"an exponential curve needs 0 < lo < hi, got [{lo:g}, {hi:g}]"
            )
        elif not lo <= default <= hi:
            problems.add(
                _line(item, "default"), f"{label}.default", f"{default:g} is outside the range [{lo:g}, {hi:g}]"
            )
        else:
            specs.append(ControlSpec(values["name"], default, lo, hi, curve))
    return tuple(specs), tuple(names)


def _midi_cc(raw_list, line, problems, controls):
    """CCBindings from the (list-checked) `midi.cc` items: declared controls, one binding per knob and control."""
    bindings, by_knob, by_control = [], {}, {}
    for label, item, _, b, ok in _items(
        raw_list, line, "midi.cc", CC_FIELDS, problems, "{channel: 1, cc: 21, control: zoom}"
    ):
        if not ok:
            continue
        knob, control = (b["channel"], b["cc"]), b["control"]
        if control not in controls:
            declared = (
                f"declared: {', '.join(controls)}"
                if controls
                else "no controls are declared (add them under `controls:`)"
            )
            problems.add(
                _line(item, "control"),
                f"{label}.control",
                f"'{control}' is not a declared control{did_you_mean(str(control), controls)}; {declared}",
            )
        elif knob in by_knob:
            problems.add(
                _line(item, "cc"), label, f"channel {knob[0]} cc {knob[1]} is already bound by {by_knob[knob]}"
            )
        elif control in by_control:
            problems.add(
                _line(item, "control"),
                f"{label}.control",
                f"'{control}' is already bound by {by_control[control]} (one knob per control)",
            )
        else:
            by_knob[knob] = by_control[control] = label
            bindings.append(CCBinding(**b))
    return tuple(bindings)


def _midi_notes(raw_list, line, problems, scene_count):
    """NoteBindings from the (list-checked) `midi.notes` items: scenes that exist, one binding per note.
    `scene_count` is None when the scenes did not parse (scene numbers are not checked then)."""
    bindings, by_note = [], {}
    for label, item, _, b, ok in _items(
        raw_list, line, "midi.notes", NOTE_FIELDS, problems, "{channel: 1, note: 36, action: next_scene}"
    ):
        if not ok:
            continue
        note, action, scene = (b["channel"], b["note"]), b["action"], b["scene"]
        if action in SCENE_ACTIONS and scene is None:
            problems.add(
                _line(item, "action"), f"{label}.scene", f"action '{action}' needs `scene: N` (1 = the first scene)"
            )
        elif action not in SCENE_ACTIONS and scene is not None:
            problems.add(
                _line(item, "scene"),
                f"{label}.scene",
                f"only the actions {' and '.join(SCENE_ACTIONS)} take a scene, not '{action}'",
            )
        elif scene is not None and scene_count is not None and scene > scene_count:
            problems.add(
                _line(item, "scene"),
                f"{label}.scene",
                f"scene {scene} does not exist; the preset's scenes are 1..{scene_count}",
            )
        elif note in by_note:
            problems.add(
                _line(item, "note"), label, f"channel {note[0]} note {note[1]} is already bound by {by_note[note]}"
            )
        else:
            by_note[note] = label
            bindings.append(NoteBinding(**b))
    return tuple(bindings)


def _midi(raw, problems, controls, scene_count):
    """The MidiSection from the (mapping-checked) `midi` value."""
    section = _check_fields(raw, MIDI_FIELDS, problems, prefix="midi.")
    return MidiSection(
        cc=_midi_cc(section["cc"], _line(raw, "cc"), problems, controls),
        notes=_midi_notes(section["notes"], _line(raw, "notes"), problems, scene_count),
    )


WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]|\\")


def not_found(text, base, remedy):
    """Why a file a preset names (written `text`) is missing, after its quoted path: where vj looked (a relative
    path is relative to the preset's folder `base`), or that it is another machine's Windows path; and `remedy`."""
    if WINDOWS_PATH.search(text):
        return f"is a Windows path, not found here: {remedy}"
    where = "" if Path(text).expanduser().is_absolute() else f" (relative to the preset, in {base})"
    return f"not found{where}: {remedy}"


def resolve_path(path_text, base):
    """A path from a preset: ~ expanded, relative ones relative to the preset's folder `base`."""
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else (base / path)


def picture_file(text, base):
    """The file of a picture a preset names: a URL's downloaded (cached) copy (vj.config.remote_files), else the
    path relative to `base`; a URL that cannot be downloaded is a PresetError naming it."""
    if not is_url(text):
        return resolve_path(text, base)
    try:
        return fetch(text)
    except RemoteFileError as exc:
        raise PresetError([str(exc)]) from None


def _picture_problem(text, base):
    """Why a picture's path text cannot name a picture, as far as `vj check` looks (URLs: only their syntax,
    since they are downloaded when a show starts), or None."""
    if is_url(text):
        return url_problem(text)
    if resolve_path(text, base).is_file():
        return None
    return not_found(text, base, "give a path relative to the preset or an http(s) URL")


def _transition_plan(raw, values, problems):
    """The latent_blend keys that go together: explicit lists both or neither, of one length; lists or a budget."""
    branches, injections = values["transition_branches"], values["transition_injections"]
    if (branches is None) != (injections is None):
        given = "transition_branches" if injections is None else "transition_injections"
        problems.add(
            _line(raw, given),
            given,
            "give transition_branches and transition_injections together "
            "(branches per level, injection strength per level)",
        )
    elif branches is not None:
        if len(branches) != len(injections):
            problems.add(
                _line(raw, "transition_injections"),
                "transition_injections",
                f"{len(injections)} injection strengths for {len(branches)} branch counts: one per level",
            )
        elif list(injections) != sorted(injections):
            problems.add(
                _line(raw, "transition_injections"),
                "transition_injections",
                f"injection strengths must increase, got {list(injections)}",
            )
        if values["transition_budget"] is not None:
            problems.add(
                _line(raw, "transition_budget"),
                "transition_budget",
                "give either transition_budget or the lists transition_branches/transition_injections",
            )


def prompt_file_problems(prompts, base):
    """(is_warning, message) for labelled prompts [(label, Prompt)]: image prompts' and image masks' files must
    exist (relative to `base`); cutoffs that do nothing (on image and direction a r l d u masks) are warnings."""
    for label, prompt in prompts:
        problem = _picture_problem(prompt.path, base) if prompt.is_image else None
        if problem:
            yield False, f"{label}: image file '{prompt.path}' {problem}"
        mask = prompt.mask
        if mask is None:
            continue
        problem = _picture_problem(mask.value, base) if mask.kind == "image" else None
        if problem:
            yield False, f"{label}: mask image '{mask.value}' {problem}"
        elif mask.cutoff is not None and not _selects_cutouts(mask):
            yield True, f"{label}: the mask cutoff {mask.cutoff:g} has no effect on {mask.kind} masks"


def _selects_cutouts(mask):
    """Whether a mask selects CLIP cutouts (pytti's semantic masks and `n`/`f`, where a cutoff means something)
    rather than pixels (image masks and the directions a r l d u)."""
    return mask.kind == "semantic" or (mask.kind == "direction" and mask.value in ("near", "far"))


def _prompt_files(prompts, key, line, base, problems, warnings):
    for is_warning, message in prompt_file_problems(prompts, base):
        if is_warning:
            warnings.append(message)
        else:
            problems.add(line, key, message)


def _guide_images(raw_list, line, problems, base, variables, image_model):
    """GuideImages from the (list-checked) items: keys, files, expressions, a concept prompt where needed."""
    guides = []
    items = _items(raw_list, line, "guide_images", GUIDE_FIELDS, problems, "{image: ref.png, method: linear}")
    for label, item, item_line, values, ok in items:
        if image_model != "diffusion":
            problems.add(
                item_line,
                label,
                f"guide images steer the diffusion conditioning; image_model is "
                f"{image_model} (use an image prompt [path] there)",
            )
            continue
        if not ok:
            continue
        written = values["image"]
        values["image"] = resolve_path(written, base)
        if not values["image"].is_file():
            remedy = "give a picture's path relative to the preset"
            problems.add(
                _line(item, "image"), f"{label}.image", f"image file '{written}' {not_found(written, base, remedy)}"
            )
            continue
        if "concept" in values["method"] and not values["concept"].strip():
            problems.add(_line(item, "concept"), f"{label}.concept", "method concept needs a `concept` prompt")
            continue
        if "{" in values["concept"] or "}" in values["concept"]:
            problems.add(_line(item, "concept"), f"{label}.concept", "a concept is plain text: no { } edits")
            continue
        try:
            values["strength"] = EXPRESSION.convert(item.get("strength", 0.3), variables)
        except ExpressionError as exc:
            problems.add(_line(item, "strength"), f"{label}.strength", str(exc))
            continue
        guides.append(GuideImage(**values))
    return tuple(guides)


def picture_problem(path):
    """Why the file at `path` is not a picture PIL reads (one line), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _control_image(item, label, values, problems, base):
    """The control image of a `controlnets` item: `video`, `previous`, or a picture or video file (resolved Path, and
    whether it is a video); None after recording a problem."""
    written = str(item["image"]).strip()
    where = (_line(item, "image"), f"{label}.image")
    if written in CONTROL_IMAGES:
        if written == "video" and values["animation_mode"] != "Video Source":
            problems.add(
                *where,
                "`video` is the Video Source frame: set animation_mode: Video Source (with video_path, or "
                "`vj live --video-in`), or give a picture or video file",
            )
            return None
        return written, False
    path = resolve_path(written, base)
    if not path.is_file():
        remedy = f"give a picture or video file relative to the preset, or one of {', '.join(CONTROL_IMAGES)}"
        problems.add(*where, f"'{written}' {not_found(written, base, remedy)}")
        return None
    if picture_problem(path) is None:
        return path, False
    if probe_video(path) is None:
        return path, True
    problems.add(*where, f"'{written}' is neither a picture nor a video vj can read")
    return None


def _controlnets(raw_list, line, problems, base, variables, values):
    """ControlNetItems from the (list-checked) `controlnets` items: keys, the net's name and fit with the model (from
    the configs on the disk), the image, the steps and the scale expression."""
    nets = []
    items = _items(raw_list, line, "controlnets", CONTROLNET_FIELDS, problems, "{model: tiny, image: previous}")
    for label, item, item_line, fields, ok in items:
        if values["image_model"] != "diffusion":
            problems.add(
                item_line, label, f"ControlNets steer the diffusion model; image_model is {values['image_model']}"
            )
            continue
        if not ok:
            continue
        name = written = fields["model"].strip()
        if resolve_path(name, base).is_dir():  # a local folder, relative to the preset like its other files
            name = str(resolve_path(name, base))
        problem = name_problem(name) or preset_fit_problem(net_for_model(name, values["model"]), values["model"])
        if problem:
            problems.add(_line(item, "model"), f"{label}.model", f"'{written}' for model {values['model']}: {problem}")
        if fields["start"] >= fields["end"]:
            problems.add(
                _line(item, "end"), f"{label}.end", f"end {fields['end']:g} must be more than start {fields['start']:g}"
            )
        if fields["low_threshold"] > fields["high_threshold"]:
            problems.add(
                _line(item, "low_threshold"),
                f"{label}.low_threshold",
                f"{fields['low_threshold']:g} is more than high_threshold {fields['high_threshold']:g}",
            )
        image = _control_image(item, label, values, problems, base)
        try:
            fields["scale"] = EXPRESSION.convert(item.get("scale", 1), variables)
            reason = out_of_range("control scale", fields["scale"](None)) if fields["scale"].is_constant else None
        except ExpressionError as exc:
            reason = str(exc)
        if reason:
            problems.add(_line(item, "scale"), f"{label}.scale", reason)
        if problem or image is None or reason:
            continue
        fields["model"], (fields["image"], fields["video_file"]) = name, image
        nets.append(ControlNetItem(**fields))
    return tuple(nets)


def _guidance(raw, values, scenes, variables, problems, base, warnings):
    """CLIP guidance keys that go together and the files they name; returns the parsed direct image prompts."""
    if values["image_model"] != "diffusion" and values["transition_mode"] == "latent_blend":
        problems.add(
            _line(raw, "transition_mode"),
            "transition_mode",
            f"latent_blend needs image_model: diffusion (not {values['image_model']}); use slerp or linear",
        )
    if values["cutouts"] % values["gradient_accumulation_steps"]:
        problems.add(
            _line(raw, "gradient_accumulation_steps"),
            "gradient_accumulation_steps",
            f"{values['gradient_accumulation_steps']} does not divide cutouts ({values['cutouts']})",
        )
    for name in values["perceptors"]:
        # open_clip: only for presets naming one
        from vj.engine.guidance.perceptors import PerceptorError, parse_perceptor

        try:
            parse_perceptor(name)
        except PerceptorError as exc:
            problems.add(_line(raw, "perceptors"), "perceptors", str(exc))
    if values["init_image"] is None and raw.get("semantic_init_weight") not in (None, 0, "0"):
        warnings.append("semantic_init_weight has no effect without init_image")
    _prompt_files(
        ((f"scene {s.index + 1}, prompt '{p.source}'", p) for s in scenes for p in s.prompts),
        "scenes",
        _line(raw, "scenes"),
        base,
        problems,
        warnings,
    )
    direct = ()
    if values["direct_image_prompts"].strip():
        line = _line(raw, "direct_image_prompts")
        try:
            parsed = parse_scenes(bracket_image_paths(values["direct_image_prompts"]), variables)
        except SceneError as exc:
            for problem in exc.problems:
                problems.add(line, "direct_image_prompts", problem)
            parsed = []
        if len(parsed) > 1:
            problems.add(line, "direct_image_prompts", "one set of prompts for every scene: no '||'")
        direct = tuple(p for s in parsed for p in s.prompts)
        for p in direct:
            if not p.is_image:
                problems.add(
                    line, "direct_image_prompts", f"'{p.source}' is not an image: write path:WEIGHT or [path]:WEIGHT"
                )
            elif p.mask is not None and _selects_cutouts(p.mask):
                problems.add(
                    line,
                    "direct_image_prompts",
                    f"'{p.source}': mask '{p.mask.value}' selects CLIP cutouts, a pixel loss has none: use an "
                    "image mask like _[mask.png] or a direction a, r, l, u, d",
                )
        _prompt_files(
            ((f"'{p.source}'", p) for p in direct if p.is_image), "direct_image_prompts", line, base, problems, warnings
        )
    values["guide_images"] = _guide_images(
        values["guide_images"], _line(raw, "guide_images"), problems, base, variables, values["image_model"]
    )
    if values["target_palette"]:
        written = values["target_palette"]
        values["target_palette"] = resolve_path(written, base)
        if not values["target_palette"].is_file():
            remedy = "give a picture's path relative to the preset, or remove target_palette"
            problems.add(
                _line(raw, "target_palette"),
                "target_palette",
                f"image file '{written}' {not_found(written, base, remedy)}",
            )
    return direct


def probe_video(path):
    """Why PyAV cannot decode a video file (one line naming it), or None: it opens, has a video stream and its
    first frame decodes."""
    import av  # bundles FFmpeg; imports no torch

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return f"'{path}' has no video stream"
            next(container.decode(video=0))
    except StopIteration:
        return f"'{path}' has no video frame that decodes"
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"cannot decode the video file '{path}' ({reason.splitlines()[0]})"
    return None


def video_path_problem(text, base):
    """Why `video_path` cannot be played, or None: a stream URL of a scheme vj reads (not connected to here), or
    a file relative to `base` that exists and decodes."""
    scheme = scheme_of(text)
    if scheme is not None:
        if scheme in STREAM_SCHEMES:
            return None
        schemes = ", ".join(f"{s}://" for s in STREAM_SCHEMES)
        return f"unknown scheme '{scheme}://' in '{text}': video_path takes a file or a URL of {schemes}"
    if text.startswith((CAMERA_PREFIX, NDI_PREFIX)):
        return f"'{text}' is a live input: give it to `vj live --video-in {text}`; video_path takes a file or a URL"
    path = resolve_path(text, base)
    if not path.is_file():
        return f"video file '{text}' " + not_found(text, base, "give a path relative to the preset or a stream URL")
    return probe_video(path)


def _video(raw, values, problems, base, warnings):
    """Video Source keys: the video's file or URL; a Video Source preset without one is kept (a live show's
    --video-in may give it) with its problem, which the Director raises when such a preset is shown without a
    video."""
    text, mode = values["video_path"].strip(), values["animation_mode"]
    values["video_path"] = text
    if text:
        problem = video_path_problem(text, base)
        if problem:
            problems.add(_line(raw, "video_path"), "video_path", problem)
        if mode != "Video Source":
            warnings.append(f"video_path has no effect with animation_mode {mode} (use Video Source)")
    elif mode == "Video Source":
        line = _line(raw, "animation_mode")
        message = "Video Source needs video_path (a video file or a stream URL)"
        warnings.append(f"animation_mode: {message}: `vj render` refuses it; `vj live --video-in SOURCE` gives one")
        where = f"{problems.name}:{line}" if line else problems.name
        values["video_problem"] = f"{where}: animation_mode: {message}, or `vj live --video-in SOURCE`"


def parse_preset(raw, name="<preset>", base=Path("."), path=None, strict=False, overlay=False):
    """Validate a raw mapping (from YAML) into a Preset, or raise PresetError with every problem. pytti's keys are
    translated first (vj.config.pytti): what vj approximates is a warning, or with `strict` a problem; an
    `overlay` (a pytti file marked `# @package _global_`, or one with `defaults:`) takes pytti's defaults."""
    problems = _Problems(name)
    if not isinstance(raw, dict):
        raise PresetError([f"{name}: expected a mapping of keys (scenes: ..., width: ...), got {type(raw).__name__}"])
    warnings = []
    translate(raw, problems, warnings, strict=strict, overlay=overlay, fields=FIELDS)
    values = _check_fields(raw, FIELDS, problems)

    audio_rate = None
    if values["input_audio"]:
        written = str(values["input_audio"])
        values["input_audio"] = resolve_path(written, base)
        if not values["input_audio"].exists():  # a shared preset's track: the command line's --audio replaces it
            line = _line(raw, "input_audio")
            message = f"audio file '{written}' {not_found(written, base, 'give the track with --audio TRACK')}"
            warnings.append(f"input_audio: {message}")
            where = f"{problems.name}:{line}" if line else problems.name
            values["audio_problem"] = f"{where}: input_audio: {message}"
        else:
            try:
                audio_rate = audio_info(values["input_audio"]).samplerate
            except AudioError as exc:
                problems.add(_line(raw, "input_audio"), "input_audio", str(exc))
    musical = f"the musical variables ({', '.join(MUSICAL_VARIABLES)} and their _prev)"
    taken = {v: musical for m in MUSICAL_VARIABLES for v in (m, f"{m}_prev")}
    bands = _filters(values["input_audio_filters"], _line(raw, "input_audio_filters"), problems, audio_rate, taken)
    controls, control_names = _controls(values["controls"], _line(raw, "controls"), problems, taken)
    names = input_variables_of(bands) + control_names
    variables = BUILTIN_VARIABLES + names + tuple(f"{n}_prev" for n in names)

    scenes, scene_count = [], None
    if isinstance(values["scenes"], str):
        try:
            scenes = parse_scenes(values["scenes"], variables, values["scene_prefix"], values["scene_suffix"])
            scene_count = len(scenes)
        except SceneError as exc:
            for problem in exc.problems:
                problems.add(_line(raw, "scenes"), "scenes", problem)
    if values["midi"] is not None:
        values["midi"] = _midi(values["midi"], problems, control_names, scene_count)
    direct = _guidance(raw, values, scenes, variables, problems, base, warnings)
    _transition_plan(raw, values, problems)
    _video(raw, values, problems, base, warnings)
    values["controlnets"] = _controlnets(
        values["controlnets"], _line(raw, "controlnets"), problems, base, variables, values
    )
    if len(values["scene_duration"]) > max(len(scenes), 1):
        problems.add(
            _line(raw, "scene_duration"),
            "scene_duration",
            f"{len(values['scene_duration'])} durations for {len(scenes)} scenes",
        )

    depth_names = tuple(n for n in DEPTH_VARIABLES if n not in variables) if values["animation_mode"] == "3D" else ()
    for field_name, spec in FIELDS.items():
        if spec.check.late and field_name in raw:
            names = variables + depth_names if field_name in MOTION_3D_KEYS else variables
            try:
                values[field_name] = spec.check.convert(raw[field_name], names)
            except ValueError as exc:  # ExpressionError, or a quaternion not written [w, x, y, z]
                problems.add(_line(raw, field_name), field_name, str(exc))
                values[field_name] = spec.typed_default()
                continue
            reason = constant_out_of_range(field_name, values[field_name])
            if reason:
                problems.add(_line(raw, field_name), field_name, reason)
    if values["init_image"] and is_url(values["init_image"]):  # downloaded when a show starts
        values["init_image"] = values["init_image"].strip()
        problem = url_problem(values["init_image"])
        if problem:
            problems.add(_line(raw, "init_image"), "init_image", f"'{values['init_image']}' {problem}")
    elif values["init_image"]:
        written = values["init_image"]
        values["init_image"] = resolve_path(written, base)
        if not values["init_image"].is_file():
            remedy = "give a picture's path relative to the preset or an http(s) URL, or remove init_image"
            problems.add(
                _line(raw, "init_image"), "init_image", f"image file '{written}' {not_found(written, base, remedy)}"
            )

    if problems.items:
        raise problems.error()
    scene_text = values["scenes"]
    values.update(scenes=scenes, input_audio_filters=bands, controls=controls, direct_image_prompts=direct)
    return Preset(path=path, scene_text=scene_text, variables=variables, warnings=tuple(warnings), **values)


GLUED_KEY = re.compile(r"^([A-Za-z_]\w*):([\"'\[{|>])")


def _glued_key(text, line):
    """A hint for a YAML error: the last top-level key before `line` written without a space after its colon
    (`scenes:"...`), which YAML reads as text, not a key."""
    for number, row in reversed(list(enumerate(text.splitlines()[: line or None], 1))):
        found = GLUED_KEY.match(row)
        if found:
            return f" (line {number}: write a space after '{found[1]}:')"
    return ""


def load_preset(path, overrides=None, strict=False):
    """Load and validate a YAML preset file; `overrides` (e.g. from the command line) replace keys; `strict`
    refuses what vj would approximate of a pytti config (vj.config.pytti)."""
    return load_preset_text(read_preset_text(path), path, overrides, strict)


def read_preset_text(path):
    """A preset file's text, or a PresetError naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError([f"{path}: preset file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError([f"{path}: cannot read preset ({exc})"]) from None


def load_preset_text(text, path, overrides=None, strict=False):
    """A preset from its YAML `text` as if read from `path` (messages name it; relative paths start at its folder):
    a live show's hot reload and a recording's preset versions parse exactly the text they keep."""
    path = Path(path)
    try:
        raw = load_yaml(text)
    except DuplicateKeyError as exc:
        raise PresetError([f"{path}:{exc.line}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        hint = _glued_key(text, mark.line + 1 if mark else None)
        raise PresetError([f"{where}: YAML syntax error: {getattr(exc, 'problem', None) or exc}{hint}"]) from None
    if raw is None:
        raw = LineDict()
        raw.lines, raw.line = {}, 1
    if overrides and isinstance(raw, dict):
        for name, value in overrides.items():
            if value is not None:
                raw[name] = value
                raw.lines[name] = None
    return parse_preset(raw, str(path), path.parent, path, strict=strict, overlay=is_overlay(text))


def with_scene(preset, index, text):
    """`preset` with scene `index` written anew as `text` (one scene of the scene DSL: a typed prompt), or a
    PresetError whose one line says why not (the scene, the language, or a picture it names)."""
    pieces = [p for p in split_scenes(preset.scene_text) if p.strip()]
    if not 0 <= index < len(pieces):
        raise PresetError([f"prompt for scene {index + 1}: there are {len(pieces)} scenes"])
    pieces[index] = text
    scene_text = "||".join(pieces)
    try:
        scenes = parse_scenes(scene_text, preset.variables, preset.scene_prefix, preset.scene_suffix)
    except SceneError as exc:
        raise PresetError([f"prompt for scene {index + 1} refused: {'; '.join(exc.problems)}"]) from None
    if len(scenes) != len(preset.scenes):
        raise PresetError([f"prompt for scene {index + 1} refused: it must be one scene (no '||')"])
    base = Path(preset.path).parent if preset.path else Path(".")
    labelled = ((f"prompt '{p.source}'", p) for p in scenes[index].prompts)
    missing = [message for is_warning, message in prompt_file_problems(labelled, base) if not is_warning]
    if missing:
        raise PresetError([f"prompt for scene {index + 1} refused: {'; '.join(missing)}"])
    return dataclasses.replace(preset, scenes=scenes, scene_text=scene_text)
