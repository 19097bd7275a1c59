"""ControlNets in a real live show: recorded with its nets and replayed bit-identically; a net playing a video file
cannot be recorded (a live show plays it by the wall clock)."""

import numpy as np
from PIL import Image

import test_record_replay as shows
from conftest import run_vj
from video_codes import write_coded_video
from vj.show.recordings.reader import Recording

NETS = """\
controlnets:
  - {model: tiny, image: logo.png, preprocessor: canny, scale: knob1 * 3}
  - {model: tiny, image: previous, preprocessor: depth, end: 0.5}
"""


def logo(folder):
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[16:48, 16:48] = 255
    Image.fromarray(picture).save(folder / "logo.png")


def test_a_show_with_nets_is_recorded_and_replays_bit_identically(tmp_path, monkeypatch):
    logo(tmp_path)
    monkeypatch.setattr(shows, "PRESET", shows.PRESET + NETS)
    folder = tmp_path / "rec"
    show = shows.LiveShow(tmp_path, folder)
    try:
        first = show.until(lambda s: shows.frames_recorded(s) >= 4)
        show.send("/vj/control/knob1", 0.9)
        show.until(
            lambda s: s["variables"]["knob1"] > 0.8 and shows.frames_recorded(s) >= shows.frames_recorded(first) + 3
        )
        show.send("/vj/control_preview", 1)
        assert show.until(lambda s: s["engine_errors"] == 0 and not s["control_preview"])  # headless: nothing shows it
    finally:
        code = show.stop()
    assert code == 0, show.process.stderr.read().decode()[-3000:]
    count = len(Recording.open(folder).frames)
    result = run_vj("replay", folder, "--verify", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"frames: {count} of {count} identical to the live ones" in result.stdout


def test_a_net_playing_a_video_file_cannot_be_recorded(tmp_path):
    write_coded_video(tmp_path / "clip.mp4", 8, width=64, height=64)
    preset = tmp_path / "show.yaml"
    preset.write_text(
        "scenes: a forest\nmodel: tiny\nwidth: 64\nheight: 64\ncontrolnets:\n  - {model: tiny, image: clip.mp4}\n"
    )
    options = ["--headless", "--out", "udp://127.0.0.1:9", "--audio-device", "none", "--osc", "off"]
    result = run_vj("live", preset, *options, "--record", tmp_path / "rec")
    assert result.returncode == 2
    assert "a ControlNet playing a video file cannot be recorded yet" in result.stderr
    assert result.stderr.count("\n") == 1
