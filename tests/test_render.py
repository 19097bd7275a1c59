import json
import re
import subprocess

import numpy as np
import pytest
import torch

from conftest import interrupt_after_frames, run_vj, tone
from vj.engine.errors import EngineError
from vj.engine.diffusion.frames import FrameEngine
from vj.commands import render
from vj.cli import build_parser
from vj.commands.render import RenderError

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
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,pix_fmt,nb_read_frames,duration,sample_rate",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
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
    assert int(video["nb_read_frames"]) == 12  # round(1.5 s x 8 fps)
    assert abs(float(video["duration"]) - 1.5) < 1 / 8
    assert abs(float(audio["duration"]) - float(video["duration"])) < 1 / 8
    assert len(list((tmp_path / "f").glob("*.png"))) == 12
    # the same render again gives identical frames
    again = run_vj(
        "render", preset, "--audio", track, "-o", tmp_path / "b.mp4", "--duration", 1.5, "--frames", tmp_path / "g"
    )
    assert again.returncode == 0
    for a in sorted((tmp_path / "f").glob("*.png")):
        assert a.read_bytes() == (tmp_path / "g" / a.name).read_bytes()


def test_ctrl_c_mid_render_leaves_a_playable_file(setup, tmp_path):
    """A real SIGINT to a running `vj render`, sent once the progress bar shows 5 frames or more."""
    preset, track = setup
    out = tmp_path / "cut.mp4"
    status, rest = interrupt_after_frames(["render", preset, "--audio", track, "-o", out, "--duration", "600"])
    assert status == 130
    done = int(re.search(r"interrupted; (\d+) of 4800 frames", rest).group(1))
    assert 5 <= done < 4800 and "Traceback" not in rest
    streams = probe(out)
    assert int(streams["video"]["nb_read_frames"]) == done
    assert abs(float(streams["audio"]["duration"]) - done / 8) < 1 / 8


@pytest.mark.parametrize(
    "error, message",
    [
        (EngineError("the GPU fell off the truss"), "the GPU fell off the truss"),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "out of GPU memory at 64x64: try a smaller --width/--height, --vae taesd, or fewer steps",
        ),
    ],
)
def test_an_error_mid_render_leaves_a_playable_file(setup, tmp_path, monkeypatch, error, message):
    preset, track = setup
    out = tmp_path / "broken.mp4"
    original = FrameEngine.render_tensor

    def fail_at_frame_7(self, request):
        if request.index == 7:
            raise error
        return original(self, request)

    monkeypatch.setattr(FrameEngine, "render_tensor", fail_at_frame_7)
    args = build_parser().parse_args(["render", str(preset), "--audio", str(track), "-o", str(out)])
    with pytest.raises(
        RenderError,
        match=re.escape(message) + r" \(the 7 frames rendered before it are in "
        r".*broken.mp4', which plays\)",
    ):
        render.main(args)
    streams = probe(out)
    assert int(streams["video"]["nb_read_frames"]) == 7
    assert abs(float(streams["audio"]["duration"]) - 7 / 8) < 1 / 8


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--width", "100"], "width: must be a multiple of 8"),
        (["--model", "nonsense"], "unknown model 'nonsense'"),
        (["--audio", "missing.wav"], "missing.wav' not found"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda was asked for, but torch sees no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
        (["--dtype", "float8"], "argument --dtype: invalid choice: 'float8'"),
    ],
)
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
