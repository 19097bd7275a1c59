import math
from pathlib import Path

import pytest

from conftest import ROOT, run_vj, tone
from vj.preset import PresetError, load_preset


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path):
    with pytest.raises(PresetError) as info:
        load_preset(path)
    return info.value.problems


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
    path = write(tmp_path, "\n".join([
        "scenes: 'a cat:flo | b:'",                 # 1
        "widht: 512",                               # 2
        "height: 500",                              # 3
        "cutouts: 40",                              # 4
        "input_audio_filters:",                     # 5
        "  - {variable_name: fLo, f_center: 105, f_width: 65}",   # 6
        "  - {variable_name: t, f_center: 900, f_width: 600, ordr: 5}",  # 7
        "  - {variable_name: fLo, f_center: 10, f_width: 60, order: 11}",  # 8
        "  - {variable_name: x, f_center: 10, f_width: 60}",  # 9
        "translate_x: fLo.real",                    # 10
        "infill_mode: mirorr",                      # 11
        "frames_per_second: fast",                  # 12
    ]))
    found = "\n".join(problems(path))
    expected = [
        ":1: scenes: scene 1, prompt 'a cat'", "did you mean 'fLo'",
        ":1: scenes: scene 1, prompt 'b': empty weight",
        ":2: widht: unknown key (did you mean 'width'?)",
        ":3: height: must be a multiple of 8",
        ":4: cutouts: pytti key 'cutouts' is not supported",
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


@pytest.mark.parametrize("text, fragment", [
    ("scenes: [a\n", "YAML syntax error"),
    ("scenes: a\nscenes: b\n", "duplicate key 'scenes' at line 2"),
    ("- a\n- b\n", "expected a mapping"),
    ("width: 512\n", "scenes: required key is missing"),
    ("scenes: a\ninput_audio_filters: [{variable_name: fLo, f_center: 100}]\n", "f_width: required key is missing"),
    ("scenes: a\ninput_audio_filters: [{variable_name: 2x, f_center: 100, f_width: 10}]\n", "not a valid name"),
    ("scenes: a\ninput_audio_filters: [{variable_name: sin, f_center: 100, f_width: 10}]\n", "'sin' is reserved"),
    ("scenes: a\ninput_audio_filters: [{variable_name: a, f_center: 100, f_width: 10},"
     " {variable_name: a_prev, f_center: 100, f_width: 10}]\n", "'a_prev' is already used"),
    ("scenes: a\ninput_audio_filters: [{variable_name: a, f_center: 100, f_width: -1}]\n", "must be > 0"),
    ("scenes: a\ninput_audio: missing.wav\n", "audio file"),
    ("scenes: a\ninit_image: missing.png\n", "image file"),
    ("scenes: a\nscene_duration: [1, 2]\n", "2 durations for 1 scenes"),
    ("scenes: a\nsteps: 0\n", "steps: must be between 1 and 50"),
    ("scenes: a\nfixed_noise: 1\n", "expected true or false"),
])
def test_single_errors(tmp_path, text, fragment):
    assert fragment in "\n".join(problems(write(tmp_path, text)))


def test_band_edges_checked_against_the_tracks_nyquist(tmp_path, write_audio):
    write_audio(tone(100, 0.5, sr=16000), sr=16000, name="low.wav")
    path = write(tmp_path, "scenes: a\ninput_audio: low.wav\ninput_audio_filters:\n"
                           "  - {variable_name: fHi, f_center: 7000, f_width: 4000}\n")
    (problem,) = problems(path)
    assert ":4: input_audio_filters[0]: filter 'fHi'" in problem and "8000 Hz" in problem


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
