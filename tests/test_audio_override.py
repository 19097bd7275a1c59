"""The command line's track replaces a preset's input_audio: shared presets name their author's files, which are
missing here, and `vj render/live/analyze --audio` must still run them."""

import shutil
from pathlib import Path

import pytest

from vj import cli
from vj.commands import analyze
from vj.config.loading import load_preset

ROOT = Path(__file__).resolve().parent.parent
TRACK = ROOT / "presets" / "audio" / "demo_beat.flac"
RENDER = ["--model", "tiny", "--width", "64", "--height", "64", "--fps", "8", "--duration", "0.25", "--device", "cpu"]


@pytest.fixture
def shared(tmp_path):
    """A preset as shared: its input_audio (the author's file) is missing here; its filters need a track."""
    preset = tmp_path / "shared" / "preset.yaml"
    preset.parent.mkdir()
    preset.write_text(
        "scenes: a forest:1 | fog:fLo\n"
        "input_audio: /home/author/music/set_closer.wav\n"
        "input_audio_filters:\n"
        "  - {variable_name: fLo, f_center: 105, f_width: 65, order: 5}\n"
    )
    return preset


def test_without_audio_the_missing_track_is_refused(shared, tmp_path, capsys):
    assert cli.main(["render", str(shared), "-o", str(tmp_path / "out.mp4"), *RENDER]) == 2
    assert "input_audio" in capsys.readouterr().err


def test_render_with_audio_replaces_the_missing_input_audio(shared, tmp_path):
    out = tmp_path / "out.mp4"
    assert cli.main(["render", str(shared), "-o", str(out), "--audio", str(TRACK), *RENDER]) == 0
    assert out.stat().st_size > 0


def test_a_relative_audio_path_is_relative_to_the_working_folder(shared, tmp_path, monkeypatch):
    (tmp_path / "music").mkdir()
    shutil.copy(TRACK, tmp_path / "music" / "track.flac")
    monkeypatch.chdir(tmp_path)  # not the preset's folder (tmp_path/shared)
    out = tmp_path / "out.mp4"
    assert cli.main(["render", str(shared), "-o", str(out), "--audio", "music/track.flac", *RENDER]) == 0
    assert out.stat().st_size > 0


def test_audio_overrides_make_the_track_the_presets_input_audio(shared, tmp_path, monkeypatch):
    assert analyze.audio_overrides(None) == {}
    monkeypatch.chdir(TRACK.parent)
    preset = load_preset(shared, analyze.audio_overrides(TRACK.name))
    assert preset.input_audio == TRACK
    csv = tmp_path / "values.csv"
    count, names = analyze.run(preset.input_audio, preset, 8, 0.0, 1.0, csv)
    assert count == 8 and "fLo" in names
    assert len(csv.read_text().splitlines()) == 9


def test_analyze_with_a_preset_whose_input_audio_is_missing(shared, tmp_path):
    csv = tmp_path / "values.csv"
    args = ["analyze", str(TRACK), "--preset", str(shared), "--duration", "1", "--fps", "8", "-o", str(csv)]
    assert cli.main(args) == 0
    assert len(csv.read_text().splitlines()) == 9


def test_a_missing_audio_file_is_named_as_the_command_lines(shared, tmp_path, capsys):
    assert cli.main(["render", str(shared), "-o", str(tmp_path / "out.mp4"), "--audio", "nowhere.wav", *RENDER]) == 2
    err = capsys.readouterr().err
    assert "audio file 'nowhere.wav' not found" in err and "preset.yaml" not in err
