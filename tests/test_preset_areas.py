"""A preset's areas: every key belongs to exactly one, `preset.area(name)` gives its values by key name (the
files stay flat), the settings built from an area take all of it, and README's key tables have one per area."""

import dataclasses
from types import SimpleNamespace

import pytest

from conftest import problems, write
from vj.audio.analysis import AudioAnalyzer
from vj.audio.beats import BeatSettings
from vj.audio.sources.files import SilenceSource
from vj.config.reference import key_tables
from vj.config.schema import AREA_KEYS, AREAS, FIELDS
from vj.config.loading import load_preset


def test_every_key_is_in_exactly_one_known_area():
    assert {name: spec.area for name, spec in FIELDS.items() if spec.area not in AREAS} == {}
    assert all(AREA_KEYS.values()), "an area without keys"
    listed = [name for names in AREA_KEYS.values() for name in names]
    assert sorted(listed) == sorted(FIELDS) and len(set(listed)) == len(listed)


def test_an_area_gives_its_values_by_key_name_and_files_stay_flat(tmp_path):
    preset = load_preset(write(tmp_path, "scenes: a\nbpm: 128\nbeats_per_bar: 3\nwidth: 256\n"))
    assert preset.area("beats") == {"bpm": 128.0, "tempo_range": (60.0, 200.0), "beats_per_bar": 3, "beat_decay": 0.1}
    assert list(preset.area("output")) == ["duration", "frames_per_second", "width", "height", "seed"]
    assert preset.area("output")["width"] == preset.width == 256
    with pytest.raises(KeyError):
        preset.area("nowhere")
    [nested] = problems(write(tmp_path, "scenes: a\nbeats: {bpm: 128}\n", "nested.yaml"))
    assert ":2: beats: unknown key" in nested


def test_the_beat_tracker_takes_the_whole_beats_area(tmp_path):
    assert [f.name for f in dataclasses.fields(BeatSettings)] == list(AREA_KEYS["beats"])
    preset = load_preset(
        write(tmp_path, "scenes: a\nbpm: 128\ntempo_range: [70, 180]\nbeats_per_bar: 3\nbeat_decay: 0.2\n")
    )
    analyzer = AudioAnalyzer.for_preset(SilenceSource(), preset)
    assert analyzer.beats.settings == BeatSettings(
        bpm=128.0, tempo_range=(70.0, 180.0), beats_per_bar=3, beat_decay=0.2
    )


def test_pixel_settings_take_the_whole_pixels_area(tmp_path):
    from vj.show.engines import pixel_settings

    preset = load_preset(
        write(
            tmp_path,
            "scenes: a\nimage_model: limited_palette\npalette_size: 3\n"
            "learning_rate: 0.05\nshow_palette: true\nsteps_per_frame: 7\nseed: 9\n",
        )
    )
    frame = SimpleNamespace(width=64, height=128, infill_mode="wrap", sampling_mode="nearest")
    settings = dataclasses.asdict(pixel_settings(preset, frame))
    from_frame = dict(width=64, height=128, infill_mode="wrap", sampling_mode="nearest")
    pixels = {k: v for k, v in preset.area("pixels").items() if k != "target_palette"}  # a picture, read apart
    assert settings == {**pixels, **from_frame, "model": "limited_palette", "seed": 9}
    assert (settings["palette_size"], settings["learning_rate"], settings["show_palette"]) == (3, 0.05, True)


def test_readme_has_one_key_table_per_area_in_order():
    text = key_tables()
    starts = [text.index(f"{title}:\n\n| key | default | valid | meaning |") for title in AREAS.values()]
    assert starts == sorted(starts)
    for names, start, end in zip(AREA_KEYS.values(), starts, [*starts[1:], text.index("\nFilters (items")]):
        table = text[start:end]
        assert table.count("\n| `") == len(names) and all(f"| `{name}` |" in table for name in names)
