"""`vj replay DIR --ray`: a recorded show re-rendered in segments on a local Ray instance equals the serial re-render
in its first segment, bit for bit, and has its length; `--verify` needs the serial replay."""

import numpy as np
import pytest
import soundfile
from PIL import Image

from conftest import run_vj

PRESET = """\
scenes: a forest:fLo+1 || a city:1
model: tiny
width: 64
height: 64
frames_per_second: 8
scene_duration: 2
input_audio_filters:
  - {variable_name: fLo, f_center: 110, f_width: 60}
translate_x: 2
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A headless live show of 5 s recorded with its track."""
    folder = tmp_path_factory.mktemp("show")
    t = np.arange(48000 * 10) / 48000
    track = (0.3 * np.sin(2 * np.pi * 110 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    soundfile.write(str(folder / "track.wav"), track, 48000, subtype="PCM_16")
    (folder / "show.yaml").write_text(PRESET)
    options = ["--audio", folder / "track.wav", "--no-playback", "--headless", "--out", "udp://127.0.0.1:9"]
    result = run_vj(
        "live", folder / "show.yaml", *options, "--osc", "off", "--duration", "5", "--record", folder / "rec"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "rec"


def frames(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_a_distributed_re_render_matches_the_serial_one(recording, tmp_path):
    serial = run_vj("replay", recording, "--fps", 8, "--frames", tmp_path / "serial", "-o", tmp_path / "serial.mp4")
    assert serial.returncode == 0, serial.stderr[-2000:]
    spread = run_vj(
        "replay",
        recording,
        "--ray",
        "--segments",
        3,
        "--warmup",
        4,
        "--frames",
        tmp_path / "spread",
        "-o",
        tmp_path / "spread.mp4",
    )
    assert spread.returncode == 0, spread.stderr[-2000:]
    assert "in 3 segments (warm-up 4 frames)" in spread.stderr
    ours, theirs = frames(tmp_path / "spread"), frames(tmp_path / "serial")
    assert len(ours) == len(theirs) >= 30
    first = len(ours) // 3 - 2  # well inside the first segment, wherever a scene change moved its cut
    assert all(np.array_equal(a, b) for a, b in zip(ours[:first], theirs[:first]))
    import av

    with av.open(str(tmp_path / "spread.mp4")) as container:
        assert container.streams.audio and sum(1 for _ in container.decode(video=0)) == len(theirs)


def test_verify_needs_the_serial_replay(recording):
    result = run_vj("replay", recording, "--ray", "--verify")
    assert result.returncode == 2
    assert "--verify compares the live frames one by one on this machine: leave out --ray" in result.stderr
