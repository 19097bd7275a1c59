import math

import pytest

from conftest import ROOT, problems, run_vj, tone, write
from vj.config.musical import MUSICAL_VARIABLES
from vj.config.loading import PresetError, load_preset


def test_every_shipped_preset_passes_vj_check():
    presets = sorted((ROOT / "presets").glob("*.yaml"))
    assert len(presets) >= 3
    result = run_vj("check", *presets)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok:") == len(presets)


def test_pytti_example_loads_verbatim():
    preset = load_preset(ROOT / "presets" / "pytti_audio_example.yaml")
    assert preset.audio_variables == ("fLo", "fHi")
    assert preset.frames_per_second == 30
    assert [b.order for b in preset.input_audio_filters] == [5, 5]
    assert len(preset.scenes[0].prompts) == 7


def test_defaults_and_types(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a cat\n"))
    assert (preset.width, preset.height, preset.steps, preset.model) == (512, 512, 1, "stabilityai/sd-turbo")
    assert preset.strength({}) == 0.5 and preset.scene_durations() == (10.0,)


def test_all_errors_reported_with_lines_and_suggestions(tmp_path):
    path = write(
        tmp_path,
        "\n".join(
            [
                "scenes: 'a cat:flo | b:'",  # 1
                "widht: 512",  # 2
                "height: 50",  # 3
                "animation_mode: 4D",  # 4
                "input_audio_filters:",  # 5
                "  - {variable_name: fLo, f_center: 105, f_width: 65}",  # 6
                "  - {variable_name: t, f_center: 900, f_width: 600, ordr: 5}",  # 7
                "  - {variable_name: fLo, f_center: 10, f_width: 60, order: 11}",  # 8
                "  - {variable_name: x, f_center: 10, f_width: 60}",  # 9
                "translate_x: fLo.real",  # 10
                "infill_mode: mirorr",  # 11
                "frames_per_second: fast",  # 12
            ]
        ),
    )
    found = "\n".join(problems(path))
    expected = [
        ":1: scenes: scene 1, prompt 'a cat'",
        "did you mean 'fLo'",
        ":1: scenes: scene 1, prompt 'b': empty weight",
        ":2: widht: unknown key (did you mean 'width'?)",
        ":3: height: must be a multiple of 8 and at least 64",
        ":4: animation_mode: must be one of off, 2D, 3D, Video Source, got '4D'",
        ":7: input_audio_filters[1].ordr: unknown key (did you mean 'order'?)",
        ":7: input_audio_filters[1].variable_name: 't' is reserved",
        ":8: input_audio_filters[2].order: must be between 1 and 10",
        ":8: input_audio_filters[2].variable_name: 'fLo' is already used",
        ":9: input_audio_filters[3]: filter 'x': band -20..40 Hz",
        ":10: translate_x: expression 'fLo.real'",
        ":11: infill_mode: must be one of mirror, wrap, black, smear, got 'mirorr' (did you mean 'mirror'?)",
        ":12: frames_per_second: expected a number",
    ]
    for fragment in expected:
        assert fragment in found, fragment
    assert all(line.startswith(str(path)) for line in found.splitlines())


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("scenes: [a\n", "YAML syntax error"),
        ("scenes: a\nscenes: b\n", "duplicate key 'scenes' at line 2"),
        ("- a\n- b\n", "expected a mapping"),
        ("width: 512\n", "scenes: required key is missing"),
        ("scenes: a\ninput_audio_filters: [{variable_name: fLo, f_center: 100}]\n", "f_width: required key is missing"),
        ("scenes: a\ninput_audio_filters: [{variable_name: 2x, f_center: 100, f_width: 10}]\n", "not a valid name"),
        ("scenes: a\ninput_audio_filters: [{variable_name: sin, f_center: 100, f_width: 10}]\n", "'sin' is reserved"),
        (
            "scenes: a\ninput_audio_filters: [{variable_name: a, f_center: 100, f_width: 10},"
            " {variable_name: a_prev, f_center: 100, f_width: 10}]\n",
            "'a_prev' is already used",
        ),
        ("scenes: a\ninput_audio_filters: [{variable_name: a, f_center: 100, f_width: -1}]\n", "must be > 0"),
        ("scenes: a\ninit_image: missing.png\n", "image file"),
        ("scenes: a\nscene_duration: [1, 2]\n", "2 durations for 1 scenes"),
        ("scenes: a\nsteps: 0\n", "steps: must be between 1 and 50"),
        ("scenes: a\nfixed_noise: 1\n", "expected true or false"),
    ],
)
def test_single_errors(tmp_path, text, fragment):
    assert fragment in "\n".join(problems(write(tmp_path, text)))


def test_band_edges_checked_against_the_tracks_nyquist(tmp_path, write_audio):
    write_audio(tone(100, 0.5, sr=16000), sr=16000, name="low.wav")
    path = write(
        tmp_path,
        "scenes: a\ninput_audio: low.wav\ninput_audio_filters:\n"
        "  - {variable_name: fHi, f_center: 7000, f_width: 4000}\n",
    )
    (problem,) = problems(path)
    assert ":4: input_audio_filters[0]: filter 'fHi'" in problem and "8000 Hz" in problem


def test_band_below_0_hz_without_a_track_names_no_infinite_frequency(tmp_path):
    path = write(tmp_path, "scenes: a\ninput_audio_filters:\n  - {variable_name: fLo, f_center: 10, f_width: 65}\n")
    (problem,) = problems(path)
    assert "band -22.5..42.5 Hz (f_center +- f_width/2) must lie above 0 Hz" in problem
    assert "inf" not in problem


def test_an_unknown_name_suggests_a_variable_before_a_function(tmp_path):
    (problem,) = problems(
        write(
            tmp_path,
            "scenes: a\ninput_audio_filters:\n  - {variable_name: fLo, f_center: 105, f_width: 65}\nzoom_x_2d: fLoo\n",
        )
    )
    assert "unknown name 'fLoo' (did you mean 'fLo'?)" in problem
    (problem,) = problems(write(tmp_path, "scenes: a\nzoom_x_2d: flor\n"))
    assert "unknown name 'flor' (did you mean 'floor'?)" in problem  # no variable is close: a function


def test_unreadable_audio_file_named(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    (problem,) = problems(write(tmp_path, "scenes: a\ninput_audio: bad.wav\n"))
    assert "bad.wav' cannot be read" in problem


def test_missing_preset_file(tmp_path):
    assert "preset file not found" in problems(tmp_path / "nope.yaml")[0]


def test_overrides_are_validated(tmp_path):
    path = write(tmp_path, "scenes: a\n")
    assert load_preset(path, {"width": 256}).width == 256
    with pytest.raises(PresetError, match="multiple of 8"):
        load_preset(path, {"width": 100})


def test_everything_preset_uses_every_feature():
    preset = load_preset(ROOT / "presets" / "everything.yaml")
    prompts = [p for s in preset.scenes for p in s.prompts]
    assert any(p.is_image for p in prompts) and any(p.mask for p in prompts)
    assert any(p.stop({"fMid": 0}) != -math.inf for p in prompts if p.stop.is_constant)
    assert {b.envelope for b in preset.input_audio_filters} == {"peak", "rms"}
    assert {b.normalize for b in preset.input_audio_filters} == {"auto", "fixed", "none"}
    assert len(preset.scene_duration) == len(preset.scenes) == 3


def test_new_keys_defaults(tmp_path):
    preset = load_preset(
        write(tmp_path, "scenes: a\ninput_audio_filters: [{variable_name: fLo, f_center: 105, f_width: 65}]\n")
    )
    assert (preset.bpm, preset.tempo_range, preset.beats_per_bar, preset.beat_decay, preset.tempo_source) == (
        None,
        (60.0, 200.0),
        4,
        0.1,
        "audio",
    )
    (band,) = preset.input_audio_filters
    assert (band.hit, band.hit_decay, band.hit_sensitivity) == (False, 0.15, 0.5)
    assert preset.input_variables == ("fLo",) + MUSICAL_VARIABLES


def test_new_keys_values(tmp_path):
    preset = load_preset(
        write(
            tmp_path,
            "\n".join(
                [
                    "scenes: a",
                    "bpm: 128",
                    "tempo_range: [60, 200]",
                    "beats_per_bar: 3",
                    "beat_decay: 0.2",
                    "tempo_source: link",
                    "input_audio_filters:",
                    "  - {variable_name: fLo, f_center: 105, f_width: 65, hit: true, hit_decay: 0.3,"
                    " hit_sensitivity: 0.8}",
                    "",
                ]
            ),
        )
    )
    assert (preset.bpm, preset.tempo_range, preset.beats_per_bar, preset.beat_decay, preset.tempo_source) == (
        128.0,
        (60.0, 200.0),
        3,
        0.2,
        "link",
    )
    (band,) = preset.input_audio_filters
    assert (band.hit, band.hit_decay, band.hit_sensitivity) == (True, 0.3, 0.8)


FILTER = "scenes: a\ninput_audio_filters:\n  - {variable_name: fLo, f_center: 105, f_width: 65, %s}\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("scenes: a\nbpm: 10\n", ":2: bpm: must be between 20 and 300, got 10"),
        ("scenes: a\nbpm: fast\n", ":2: bpm: expected a number, got 'fast'"),
        ("scenes: a\ntempo_range: [180, 70]\n", ":2: tempo_range: min 180 must be less than max 70"),
        ("scenes: a\ntempo_range: 120\n", ":2: tempo_range: expected a list of two numbers [min, max], got 120"),
        ("scenes: a\ntempo_range: [60, 120, 180]\n", ":2: tempo_range: expected a list of two numbers [min, max]"),
        ("scenes: a\ntempo_range: [10, 100]\n", ":2: tempo_range: must be between 20 and 300, got 10"),
        ("scenes: a\nbeats_per_bar: 0\n", ":2: beats_per_bar: must be between 1 and 16, got 0"),
        ("scenes: a\nbeats_per_bar: 3.5\n", ":2: beats_per_bar: expected an integer, got 3.5"),
        ("scenes: a\nbeat_decay: 0\n", ":2: beat_decay: must be > 0, got 0"),
        (
            "scenes: a\ntempo_source: likn\n",
            ":2: tempo_source: must be one of audio, link, got 'likn' (did you mean 'link'?)",
        ),
        ("scenes: a\ntempo_sorce: link\n", ":2: tempo_sorce: unknown key (did you mean 'tempo_source'?)"),
        (FILTER % "hit: 1", ":3: input_audio_filters[0].hit: expected true or false, got 1"),
        (FILTER % "hit_decay: 0", ":3: input_audio_filters[0].hit_decay: must be > 0, got 0"),
        (
            FILTER % "hit_sensitivity: 1.5",
            ":3: input_audio_filters[0].hit_sensitivity: must be between 0 and 1, got 1.5",
        ),
        (FILTER % "hits: true", ":3: input_audio_filters[0].hits: unknown key (did you mean 'hit'?)"),
        (
            "scenes: a\ntransition_mode: latent\n",
            ":2: transition_mode: must be one of linear, slerp, latent_blend, got "
            "'latent' (did you mean 'latent_blend'?)",
        ),
        (
            "scenes: a\ntransition_quality: best\n",
            ":2: transition_quality: must be one of lowest, low, medium, high, ultra, got 'best'",
        ),
        ("scenes: a\ntransition_depth: 2\n", ":2: transition_depth: must be between 0 and 1, got 2"),
        (
            "scenes: a\ntransition_branches: [2, 3]\n",
            ":2: transition_branches: give transition_branches and transition_injections together",
        ),
        (
            "scenes: a\ntransition_branches: [2, 3]\ntransition_injections: [0.5]\n",
            ":3: transition_injections: 1 injection strengths for 2 branch counts: one per level",
        ),
        (
            "scenes: a\ntransition_branches: [2, 3]\ntransition_injections: [0.8, 0.2]\n",
            ":3: transition_injections: injection strengths must increase, got [0.8, 0.2]",
        ),
        (
            "scenes: a\ntransition_branches: [2]\ntransition_injections: [0.5]\ntransition_budget: 1\n",
            ":4: transition_budget: give either transition_budget or the lists",
        ),
        ("scenes: a\ntransition_branches: []\n", ":2: transition_branches: expected a list of integer 0..64, got []"),
        (
            "scenes: a\ntransition_injections: [1.5]\ntransition_branches: [1]\n",
            ":2: transition_injections: must be between 0 and 1, got 1.5",
        ),
    ],
)
def test_new_keys_bad_values(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert [p for p in problems(path) if p.startswith(f"{path}{expected}")], expected


def _filters(*items):
    return "scenes: a\ninput_audio_filters:\n" + "".join(
        f"  - {{variable_name: {item}, f_center: 105, f_width: 65}}\n" for item in items
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            _filters("fLo, hit: true", "fLo_hit"),
            ":4: input_audio_filters[1].variable_name: 'fLo_hit' is already used by input_audio_filters[0]",
        ),
        (
            _filters("fLo, hit: true", "fLo_hit_prev"),
            ":4: input_audio_filters[1].variable_name: 'fLo_hit_prev' is already used by input_audio_filters[0]",
        ),
        (
            _filters("fLo_hit", "fLo, hit: true"),
            ":4: input_audio_filters[1].variable_name: 'fLo' makes the variable "
            "'fLo_hit' (hit: true), which is already used by input_audio_filters[0]",
        ),
        (
            _filters("a_prev", "a"),
            ":4: input_audio_filters[1].variable_name: 'a' makes the variable 'a_prev', which is "
            "already used by input_audio_filters[0]",
        ),
        (
            _filters("beat"),
            ":3: input_audio_filters[0].variable_name: 'beat' is reserved (a musical variable: beat, "
            "beat_phase, bar_phase, bpm, beat_count); choose another name",
        ),
        (
            _filters("bpm_prev"),
            ":3: input_audio_filters[0].variable_name: 'bpm_prev' is already used by the musical variables",
        ),
    ],
)
def test_variable_name_clashes(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert [p for p in problems(path) if p.startswith(f"{path}{expected}")], expected


def test_similar_names_that_do_not_clash(tmp_path):
    preset = load_preset(write(tmp_path, _filters("fLo_hit", "fLo", "beat_hit", "x, hit: true")))
    assert preset.input_variables == ("fLo_hit", "fLo", "beat_hit", "x", "x_hit") + MUSICAL_VARIABLES


def test_hit_and_musical_variables_in_expressions(tmp_path):
    path = write(
        tmp_path,
        "\n".join(
            [
                'scenes: "a: fLo_hit + osc(beat_phase) | b: bar_phase + fLo_hit_prev"',
                "strength: 0.1*beat + bpm_prev/1000 + beat_count % 4",
                "input_audio_filters:",
                "  - {variable_name: fLo, f_center: 105, f_width: 65, hit: true}",
                "  - {variable_name: fHi, f_center: 900, f_width: 600}",
                "",
            ]
        ),
    )
    preset = load_preset(path)
    assert preset.audio_variables == ("fLo", "fHi")
    assert preset.input_variables == ("fLo", "fHi", "fLo_hit") + MUSICAL_VARIABLES
    env = dict.fromkeys(preset.variables, 0.0) | {
        "fLo_hit": 0.5,
        "beat_phase": 0.25,
        "beat": 1.0,
        "bpm_prev": 120.0,
        "beat_count": 6.0,
    }
    a, b = preset.scenes[0].prompts
    assert a.weight(env) == pytest.approx(1.5) and b.weight(env) == 0
    assert preset.strength(env) == pytest.approx(0.1 + 0.12 + 2)
    result = run_vj("check", path)
    assert "variables: fLo, fHi, fLo_hit, beat, beat_phase, bar_phase, bpm, beat_count," in result.stdout


def test_hit_variable_needs_hit_true(tmp_path):
    path = write(
        tmp_path,
        "scenes: a\nstrength: fLo_hit\ninput_audio_filters: [{variable_name: fLo, f_center: 105, f_width: 65}]\n",
    )
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:2: strength: expression 'fLo_hit'") and "unknown name 'fLo_hit'" in problem


def test_problems_in_file_order(tmp_path):
    path = write(tmp_path, "scenes: 'a: nope'\nwidth: 3\nrotate_3d: 4\nheight: 3\n")
    assert [p.split(":")[1] for p in problems(path)] == ["1", "2", "3", "4"]
