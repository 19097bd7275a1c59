"""Preset keys for live shows: `controls` (variables set live), `midi` (bindings) and `scene_quantize`."""

import math

import jsonschema
import pytest
import yaml

from conftest import ROOT, problems, run_vj, write
from vj.live.controls.actions import Blackout, JumpScene, QueueScene
from vj.config.live_keys import ControlSpec
from vj.live.controls.controls import Controls
from vj.live.controls.midi.map import MidiMap
from vj.config.loading import PresetError, load_preset
from vj.config.live_keys import CCBinding, MidiSection, NoteBinding
from vj.config.reference import json_schema

CONTROLS = """scenes: "a: 1 + glow || b: zoom_prev"
strength: 0.2 + glow*fLo + zoom/100
input_audio_filters: [{variable_name: fLo, f_center: 105, f_width: 65}]
controls:
  - {name: glow, default: 0.5}
  - {name: zoom, range: [0.5, 20], curve: exponential}
  - name: drift
    default: -1
    range: [-4, 4]
    curve: square
"""


def assert_problem(path, expected):
    found = problems(path)
    assert [p for p in found if p.startswith(f"{path}{expected}")], f"{expected!r} not in {found}"


def test_controls_become_variables_with_their_prev(tmp_path):
    preset = load_preset(write(tmp_path, CONTROLS))
    assert preset.controls == (
        ControlSpec("glow", 0.5, 0.0, 1.0, "linear"),
        ControlSpec("zoom", 0.5, 0.5, 20.0, "exponential"),
        ControlSpec("drift", -1.0, -4.0, 4.0, "square"),
    )
    assert preset.control_names == ("glow", "zoom", "drift")
    assert preset.input_variables[0] == "fLo" and "glow" not in preset.input_variables
    assert {"glow", "glow_prev", "zoom", "zoom_prev", "drift", "drift_prev"} <= set(preset.variables)
    env = dict.fromkeys(preset.variables, 0.0) | Controls(preset.controls).values | {"fLo": 0.5, "zoom_prev": 3.0}
    assert preset.strength(env) == pytest.approx(0.2 + 0.5 * 0.5 + 0.5 / 100)
    a, b = (scene.prompts[0] for scene in preset.scenes)
    assert a.weight(env) == pytest.approx(1.5) and b.weight(env) == 3.0


def test_defaults_of_the_new_keys(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a\ncontrols: [{name: x}]\n"))
    assert (preset.scene_quantize, preset.midi) == ("none", None)
    assert preset.controls == (ControlSpec("x", 0.0, 0.0, 1.0, "linear"),)
    assert load_preset(write(tmp_path, "scenes: a\n")).controls == ()
    assert load_preset(write(tmp_path, "scenes: a\nscene_quantize: bar\n")).scene_quantize == "bar"


def test_midi_section_is_parsed_into_bindings(tmp_path):
    preset = load_preset(
        write(
            tmp_path,
            CONTROLS
            + """midi:
  cc:
    - {cc: 21, control: glow}
    - {channel: 16, cc: 0, control: zoom}
  notes:
    - {note: 36, action: scene, scene: 2}
    - {channel: 2, note: 127, action: queue, scene: 1}
    - {note: 0, action: blackout}
""",
        )
    )
    assert preset.midi == MidiSection(
        cc=(CCBinding(channel=1, cc=21, control="glow"), CCBinding(channel=16, cc=0, control="zoom")),
        notes=(
            NoteBinding(channel=1, note=36, action="scene", scene=2),
            NoteBinding(channel=2, note=127, action="queue", scene=1),
            NoteBinding(channel=1, note=0, action="blackout"),
        ),
    )
    midi_map = MidiMap.for_preset(preset)
    assert midi_map.cc == {(1, 21): "glow", (16, 0): "zoom"}
    assert midi_map.notes == {(1, 36): JumpScene(1), (2, 127): QueueScene(0), (1, 0): Blackout()}


def test_shipped_live_preset_uses_controls_midi_and_quantize():
    preset = load_preset(ROOT / "presets" / "live.yaml")
    assert len(preset.controls) >= 3 and {c.curve for c in preset.controls} == {"linear", "exponential", "square"}
    assert preset.midi.cc and preset.midi.notes and preset.scene_quantize != "none"
    used = " ".join(
        [preset.scene_text, *(str(getattr(preset, k).source) for k in ("strength", "zoom_x_2d", "translate_x"))]
    )
    assert all(name in used for name in preset.control_names)


def test_vj_check_lists_controls_and_midi(tmp_path):
    path = write(tmp_path, CONTROLS + "midi: {cc: [{cc: 1, control: glow}], notes: [{note: 36, action: hud}]}\n")
    result = run_vj("check", path)
    assert result.returncode == 0, result.stderr
    assert "controls: glow, zoom, drift, MIDI: 1 knob, 1 note," in result.stdout
    result = run_vj("check", write(tmp_path, "scenes: a\n", "plain.yaml"))
    assert result.returncode == 0 and "controls:" not in result.stdout and "MIDI:" not in result.stdout


C = "scenes: a || b\ncontrols:\n  - {name: zoom}\n"
M = C + "midi:\n  %s:\n    - %s\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "scenes: a\ncontrols: {name: zoom}\n",
            ":2: controls: expected a list of {name: zoom, default: 0.5, range: [0, 1], curve: linear}",
        ),
        ("scenes: a\ncontrols: [zoom]\n", ":2: controls[0]: expected a mapping like {name: zoom"),
        ("scenes: a\ncontrols:\n  - {default: 0.5}\n", ":3: controls[0].name: required key is missing"),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, curv: linear}\n",
            ":3: controls[0].curv: unknown key (did you mean 'curve'?)",
        ),
        ("scenes: a\ncontrols:\n  - {name: 2x}\n", ":3: controls[0].name: '2x' is not a valid name"),
        ("scenes: a\ncontrols:\n  - {name: sin}\n", ":3: controls[0].name: 'sin' is reserved"),
        ("scenes: a\ncontrols:\n  - {name: beat}\n", ":3: controls[0].name: 'beat' is reserved (a musical variable"),
        (
            "scenes: a\ncontrols:\n  - {name: beat_prev}\n",
            ":3: controls[0].name: 'beat_prev' is already used by the musical variables",
        ),
        (
            "scenes: a\ninput_audio_filters: [{variable_name: fLo, f_center: 105, f_width: 65, hit: true}]\n"
            "controls:\n  - {name: fLo_hit}\n",
            ":4: controls[0].name: 'fLo_hit' is already used by input_audio_filters[0]",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: zoom}\n  - {name: zoom}\n",
            ":4: controls[1].name: 'zoom' is already used by controls[0]",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: a_prev}\n  - {name: a}\n",
            ":4: controls[1].name: 'a' makes the variable 'a_prev', which is already used by controls[0]",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, default: 2}\n",
            ":3: controls[0].default: 2 is outside the range [0, 1]",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, default: high}\n",
            ":3: controls[0].default: expected a number, got 'high'",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, range: [1, 1]}\n",
            ":3: controls[0].range: min 1 must be less than max 1",
        ),
        ("scenes: a\ncontrols:\n  - {name: zoom, range: 5}\n", ":3: controls[0].range: expected a list of two numbers"),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, curve: log}\n",
            ":3: controls[0].curve: must be one of linear, exponential, square, got 'log'",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, curve: exponential}\n",
            ":3: controls[0].range: an exponential curve needs 0 < lo < hi, got [0, 1]",
        ),
        (
            "scenes: a\ncontrols:\n  - {name: zoom, curve: exponential, range: [-1, 4]}\n",
            ":3: controls[0].range: an exponential curve needs 0 < lo < hi, got [-1, 4]",
        ),
        ("scenes: a\nstrength: zoom\n", ":2: strength: expression 'zoom' at column 1: unknown name 'zoom'"),
        (
            "scenes: a\nscene_quantize: bars\n",
            ":2: scene_quantize: must be one of none, beat, bar, got 'bars' (did you mean 'bar'?)",
        ),
        (C + "midi: [1, 2]\n", ":4: midi: expected a mapping like {cc: "),
        (C + "midi: {ccs: []}\n", ":4: midi.ccs: unknown key (did you mean 'cc'?); valid midi keys: cc, notes"),
        (
            C + "midi: {cc: {cc: 1, control: zoom}}\n",
            ":4: midi.cc: expected a list of {channel: 1, cc: 21, control: zoom}",
        ),
        (M % ("cc", "21"), ":6: midi.cc[0]: expected a mapping like {channel: 1, cc: 21, control: zoom}"),
        (M % ("cc", "{control: zoom}"), ":6: midi.cc[0].cc: required key is missing"),
        (M % ("cc", "{cc: 21}"), ":6: midi.cc[0].control: required key is missing"),
        (M % ("cc", "{cc: 128, control: zoom}"), ":6: midi.cc[0].cc: must be between 0 and 127, got 128"),
        (M % ("cc", "{cc: 1.5, control: zoom}"), ":6: midi.cc[0].cc: expected an integer, got 1.5"),
        (M % ("cc", "{channel: 0, cc: 1, control: zoom}"), ":6: midi.cc[0].channel: must be between 1 and 16, got 0"),
        (M % ("cc", "{channel: 17, cc: 1, control: zoom}"), ":6: midi.cc[0].channel: must be between 1 and 16, got 17"),
        (
            M % ("cc", "{cc: 1, control: zom}"),
            ":6: midi.cc[0].control: 'zom' is not a declared control (did you mean 'zoom'?); declared: zoom",
        ),
        (
            "scenes: a\nmidi:\n  cc:\n    - {cc: 1, control: zoom}\n",
            ":4: midi.cc[0].control: 'zoom' is not a declared "
            "control; no controls are declared (add them under "
            "`controls:`)",
        ),
        (
            M % ("cc", "{cc: 1, control: zoom, knob: 2}"),
            ":6: midi.cc[0].knob: unknown key; valid midi.cc[0] keys: channel, cc, control",
        ),
        (
            C
            + "  - {name: hue}\nmidi:\n  cc:\n    - {cc: 1, control: zoom}\n    - {channel: 1, cc: 1, control: hue}\n",
            ":8: midi.cc[1]: channel 1 cc 1 is already bound by midi.cc[0]",
        ),
        (
            C + "midi:\n  cc:\n    - {cc: 1, control: zoom}\n    - {cc: 2, control: zoom}\n",
            ":7: midi.cc[1].control: 'zoom' is already bound by midi.cc[0] (one knob per control)",
        ),
        (M % ("notes", "{note: 36}"), ":6: midi.notes[0].action: required key is missing"),
        (M % ("notes", "{action: hud}"), ":6: midi.notes[0].note: required key is missing"),
        (M % ("notes", "{note: -1, action: hud}"), ":6: midi.notes[0].note: must be between 0 and 127, got -1"),
        (
            M % ("notes", "{note: 36, action: blakout}"),
            ":6: midi.notes[0].action: must be one of next_scene, "
            "previous_scene, scene, queue, blackout, freeze, tap_tempo, "
            "downbeat, hud, got 'blakout' (did you mean 'blackout'?)",
        ),
        (
            M % ("notes", "{note: 36, action: scene}"),
            ":6: midi.notes[0].scene: action 'scene' needs `scene: N` (1 = the first scene)",
        ),
        (M % ("notes", "{note: 36, action: queue}"), ":6: midi.notes[0].scene: action 'queue' needs `scene: N`"),
        (
            M % ("notes", "{note: 36, action: scene, scene: 3}"),
            ":6: midi.notes[0].scene: scene 3 does not exist; the preset's scenes are 1..2",
        ),
        (
            M % ("notes", "{note: 36, action: queue, scene: 0}"),
            ":6: midi.notes[0].scene: must be an integer >= 1, got 0",
        ),
        (
            M % ("notes", "{note: 36, action: hud, scene: 1}"),
            ":6: midi.notes[0].scene: only the actions scene and queue take a scene, not 'hud'",
        ),
        (
            C + "midi:\n  notes:\n    - {note: 36, action: hud}\n    - {channel: 1, note: 36, action: freeze}\n",
            ":7: midi.notes[1]: channel 1 note 36 is already bound by midi.notes[0]",
        ),
    ],
)
def test_each_kind_of_error_is_one_line_with_file_and_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert_problem(path, expected)
    assert all("\n" not in p for p in problems(path))


def test_a_control_with_a_bad_range_is_still_known_to_expressions_and_midi(tmp_path):
    path = write(
        tmp_path, "scenes: 'a: zoom'\ncontrols:\n  - {name: zoom, default: 5}\nmidi: {cc: [{cc: 1, control: zoom}]}\n"
    )
    (problem,) = problems(path)
    assert problem == f"{path}:3: controls[0].default: 5 is outside the range [0, 1]"


def test_errors_of_several_items_all_reported_in_file_order(tmp_path):
    path = write(
        tmp_path,
        "scenes: a\ncontrols:\n  - {name: x, curve: cubic}\n  - {name: y, default: 3}\n"
        "midi:\n  notes:\n    - {note: 200, action: hud}\n",
    )
    assert [p.split(":")[1] for p in problems(path)] == ["3", "4", "7"]


def test_exponential_and_square_defaults_inside_range(tmp_path):
    preset = load_preset(
        write(
            tmp_path,
            "scenes: a\ncontrols:\n  - {name: f, range: [20, 20000], curve: "
            "exponential}\n  - {name: s, default: 0.25, curve: square}\n",
        )
    )
    f, s = preset.controls
    assert (f.default, f.value(0.5)) == (20.0, pytest.approx(math.sqrt(20 * 20000)))
    assert s.position(s.default) == pytest.approx(0.5)


SCHEMA = jsonschema.Draft7Validator(json_schema())


@pytest.mark.parametrize(
    "change",
    [
        {"controls": {"name": "x"}},
        {"controls": [{"name": "2x"}]},
        {"controls": [{"name": "x", "curve": "log"}]},
        {"controls": [{"name": "x", "range": [1]}]},
        {"controls": [{"nam": "x"}]},
        {"midi": {"ccs": []}},
        {"midi": {"cc": [{"channel": 17, "cc": 1, "control": "x"}]}},
        {"midi": {"cc": [{"cc": 128, "control": "x"}]}},
        {"midi": {"notes": [{"note": 1, "action": "jump"}]}},
        {"midi": {"notes": [{"note": 1, "action": "scene", "scene": 0}]}},
        {"scene_quantize": "bars"},
    ],
)
def test_schema_and_vj_refuse_the_same_bad_values(tmp_path, change):
    data = {"scenes": "a", **change}
    assert list(SCHEMA.iter_errors(data)), f"the schema accepts {change}"
    with pytest.raises(PresetError):
        load_preset(write(tmp_path, yaml.safe_dump(data)))


def test_schema_accepts_what_vj_accepts(tmp_path):
    data = yaml.safe_load(
        CONTROLS + "scene_quantize: beat\nmidi: {cc: [{cc: 1, control: glow}], "
        "notes: [{note: 36, action: queue, scene: 2}, {note: 37, action: hud}]}\n"
    )
    assert list(SCHEMA.iter_errors(data)) == []
    load_preset(write(tmp_path, yaml.safe_dump(data)))
