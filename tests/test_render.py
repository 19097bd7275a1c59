import json
import subprocess
from argparse import Namespace

import numpy as np
import pytest

from conftest import run_vj, tone
from vj import render

PRESET = """
scenes: a forest:1 | sparks:fHi || a city:1 | rain:fLo
scene_duration: 0.5
transition_time: 0.25
frames_per_second: 8
width: 64
height: 64
model: tiny
input_audio_filters:
  - {variable_name: fLo, f_center: 105, f_width: 65}
  - {variable_name: fHi, f_center: 900, f_width: 600}
zoom_x_2d: 2*fLo
rotate_2d: fHi
strength: 0.4 + 0.3*fLo
"""


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,pix_fmt,nb_read_frames,duration,sample_rate",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


@pytest.fixture
def setup(tmp_path, write_audio):
    preset = tmp_path / "p.yaml"
    preset.write_text(PRESET)
    sr = 22050
    track = write_audio(np.concatenate([tone(100, 1.0, sr), tone(900, 1.0, sr)]), sr=sr, name="t.wav")
    return preset, track


def test_render_writes_synced_h264_and_aac(setup, tmp_path):
    preset, track = setup
    out = tmp_path / "out.mp4"
    result = run_vj("render", preset, "--audio", track, "-o", out, "--duration", 1.5, "--frames", tmp_path / "f")
    assert result.returncode == 0, result.stderr
    streams = probe(out)
    video, audio = streams["video"], streams["audio"]
    assert (video["codec_name"], video["pix_fmt"], audio["codec_name"]) == ("h264", "yuv420p", "aac")
    assert int(video["nb_read_frames"]) == 12                      # round(1.5 s x 8 fps)
    assert abs(float(video["duration"]) - 1.5) < 1 / 8
    assert abs(float(audio["duration"]) - float(video["duration"])) < 1 / 8
    assert len(list((tmp_path / "f").glob("*.png"))) == 12
    # the same render again gives identical frames
    again = run_vj("render", preset, "--audio", track, "-o", tmp_path / "b.mp4", "--duration", 1.5,
                   "--frames", tmp_path / "g")
    assert again.returncode == 0
    for a in sorted((tmp_path / "f").glob("*.png")):
        assert a.read_bytes() == (tmp_path / "g" / a.name).read_bytes()


def test_interrupted_render_still_plays(setup, tmp_path, capsys):
    preset, track = setup
    out = tmp_path / "cut.mp4"
    args = Namespace(preset=str(preset), audio=str(track), output=str(out), model=None, vae=None, fps=None, width=None,
                     height=None, seed=None, overwrite=False, frames=None, device="cpu", start=0.0, duration=2.0,
                     compile=False)

    def stop_after_five(frames):
        if frames == 5:
            raise KeyboardInterrupt

    original = render.write
    try:
        render.write = lambda *a, **kw: original(*a, **kw, on_frame=stop_after_five)
        assert render.main(args) == 130
    finally:
        render.write = original
    assert "interrupted; 5 of 16 frames" in capsys.readouterr().err
    streams = probe(out)
    assert int(streams["video"]["nb_read_frames"]) == 5
    assert abs(float(streams["audio"]["duration"]) - 5 / 8) < 1 / 8


@pytest.mark.parametrize("extra, fragment", [
    (["--width", "100"], "width: must be a multiple of 8"),
    (["--model", "nonsense"], "unknown model 'nonsense'"),
    (["--audio", "missing.wav"], "missing.wav' not found"),
])
def test_bad_input_is_one_clear_error(setup, tmp_path, extra, fragment):
    preset, track = setup
    args = ["render", preset, "-o", tmp_path / "x.mp4"] + (extra if "--audio" in extra else ["--audio", track] + extra)
    result = run_vj(*args, cwd=tmp_path)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


def test_existing_output_needs_overwrite(setup, tmp_path):
    preset, track = setup
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"keep me")
    result = run_vj("render", preset, "--audio", track, "-o", out)
    assert result.returncode == 2 and "--overwrite" in result.stderr and out.read_bytes() == b"keep me"


def test_filters_without_a_track_are_an_error(setup, tmp_path):
    preset, _ = setup
    result = run_vj("render", preset, "-o", tmp_path / "x.mp4")
    assert result.returncode == 2 and "need a track" in result.stderr
