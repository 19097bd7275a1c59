"""Video in and out in `vj render` and `vj live`: a render follows its video deterministically; in a show the
frames shown go to every output (black while blacked out), the outputs' and the video source's warnings reach the
HUD and their counts the stats, `--headless` runs without a window, and bad video options are one line before
anything loads."""

import json

import pytest

from conftest import run_vj
from test_live_show import PRESET, CountingDisplay, tiny_loop
from vj.live.controls import actions as act
from vj.live.headless import Headless
from vj.live.loop import Show
from vj.video.outputs.base import FrameOutput
from vj.video.sources.base import VideoSource


@pytest.fixture
def preset_file(tmp_path):
    path = tmp_path / "show.yaml"
    path.write_text(PRESET)
    return path


class RecordingOutput:
    """An output that keeps what it is sent (the real ones send it on their own thread)."""

    def __init__(self, target="udp://127.0.0.1:1", warning=None):
        self.target = target
        self.warning = warning
        self.frames = []

    def send(self, rgb):
        self.frames.append(rgb.copy())

    def stats(self):
        return {"sent": len(self.frames), "dropped": 0, "errors": 0}

    def close(self):
        pass


class StillVideo:
    """A video source that holds one frame (a lost stream says so)."""

    description = "still"

    def __init__(self, warning=None):
        self.warning = warning

    def frame_for(self, t):
        return None

    def stats(self):
        return {"decoded": 3, "used": 2, "errors": 1, "age_s": 0.5}

    def close(self):
        pass


def shown_show(preset_file, outputs, display=None):
    loop, clock = tiny_loop(preset_file)
    show = Show(loop, display or CountingDisplay(), act.ActionBus(), clock, hud=False, outputs=outputs)
    return show, loop


def test_the_fakes_are_an_output_and_a_source():
    assert isinstance(RecordingOutput(), FrameOutput) and isinstance(StillVideo(), VideoSource)


def test_every_new_frame_shown_goes_to_every_output_and_black_while_blacked_out(preset_file):
    a, b = RecordingOutput("udp://127.0.0.1:1"), RecordingOutput("ndi:vj")
    show, loop = shown_show(preset_file, [a, b])
    loop.step()
    show._present()
    show._present()  # the same frame again: nothing new to send
    assert len(a.frames) == len(b.frames) == 1
    assert a.frames[0].shape == (64, 64, 3) and a.frames[0].any()
    show.handle(act.Blackout(True))
    loop.step()
    show._present()
    assert len(a.frames) == 2 and not a.frames[1].any()


def test_output_and_video_warnings_reach_the_hud_and_their_counts_the_stats(preset_file):
    out = RecordingOutput("srt://127.0.0.1:9000", warning="no receiver, retrying")
    show, loop = shown_show(preset_file, [out])
    loop.state.video = StillVideo(warning="video lost: reconnecting")
    warnings = [w for w in show._input_warnings() if w]
    assert "srt://127.0.0.1:9000: no receiver, retrying" in warnings and "video lost: reconnecting" in warnings
    record = show.record()
    assert record["outputs"] == {"srt://127.0.0.1:9000": {"sent": 0, "dropped": 0, "errors": 0}}
    assert record["video_in"] == {"decoded": 3, "used": 2, "errors": 1, "age_s": 0.5}
    json.dumps(record)


def test_without_outputs_or_video_the_stats_are_as_before(preset_file):
    show, _ = shown_show(preset_file, [])
    record = show.record()
    assert "outputs" not in record and "video_in" not in record


def test_headless_counts_the_frames_it_is_given_and_draws_nothing(preset_file):
    out = RecordingOutput()
    headless = Headless()
    show, loop = shown_show(preset_file, [out], display=headless)
    assert headless.poll() == [] and headless.flipped_at is None
    loop.step()
    show._present()
    assert headless.flipped_at is not None and headless.fps == 1.0 and len(out.frames) == 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--headless"], "--headless shows nothing: give one or more --out TARGET"),
        (["--out", "ndi:vj", "--out", "ndi:vj"], "--out ndi:vj given twice"),
        (["--out", "ftp://host:1"], "--out: ftp://host:1: ftp:// is no output; use srt://HOST:PORT"),
        (["--video-in", "gopher://x"], "--video-in: 'gopher://x': unknown scheme gopher://"),
    ],
)
def test_bad_video_options_are_one_line_before_anything_loads(preset_file, options, message):
    result = run_vj("live", preset_file, "--model", "tiny", *options)
    assert result.returncode == 2
    assert result.stderr.startswith(f"vj live: error: {message}") and result.stderr.count("\n") == 1


def test_a_reload_into_video_source_without_a_video_is_refused_and_the_show_keeps_its_preset(preset_file):
    from test_live_show import make_state

    state = make_state(preset_file)
    kept = state.preset
    preset_file.write_text(PRESET + "animation_mode: Video Source\n")
    assert state.reload() is None
    assert state.preset is kept and state.director.preset is kept
    assert any("reload refused" in w and "animation_mode" in w for w in state.warnings.current())


def test_a_headless_show_reads_a_video_and_sends_its_frames_to_a_udp_receiver(preset_file, tmp_path):
    from test_video_out import Receiver, udp_port
    from video_codes import write_coded_video

    clip = write_coded_video(tmp_path / "clip.mp4", 60, fps=30, width=64, height=64)
    target = f"udp://127.0.0.1:{udp_port()}"
    receiver = Receiver(f"{target}?overrun_nonfatal=1&fifo_size=100000", count=10)
    stats = tmp_path / "stats.jsonl"
    options = ["--headless", "--out", target, "--video-in", clip, "--audio-device", "none", "--osc", "off"]
    result = run_vj("live", preset_file, "--model", "tiny", *options, "--duration", "8", "--stats", stats)
    assert result.returncode == 0, result.stderr
    assert f"outputs: {target}" in result.stdout and "video in: " in result.stdout and "display: none" in result.stdout
    assert receiver.done.wait(10) and receiver.error is None
    assert len(receiver.decoded) == 10  # the show's frames, decoded by a receiver over loopback
    record = json.loads(stats.read_text().splitlines()[-1])
    assert record["outputs"][target]["sent"] >= 10 and record["outputs"][target]["errors"] == 0
    assert record["video_in"]["decoded"] > 0 and record["video_in"]["used"] > 0 and record["video_in"]["errors"] == 0


def test_a_video_source_render_is_deterministic_and_needs_its_video(tmp_path):
    from video_codes import write_coded_video

    write_coded_video(tmp_path / "clip.mp4", 30, fps=10, width=64, height=64)
    preset = tmp_path / "v.yaml"
    preset.write_text(PRESET + "animation_mode: Video Source\nvideo_path: clip.mp4\nframe_stride: 2\n")
    frames = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = run_vj("render", preset, "--model", "tiny", "--duration", "1", "-o", f"{out}.mp4", "--frames", out)
        assert result.returncode == 0, result.stderr
        frames.append([p.read_bytes() for p in sorted(out.glob("*.png"))])
    assert len(frames[0]) == 10 and frames[0] == frames[1]
    preset.write_text(PRESET + "animation_mode: Video Source\n")
    result = run_vj("render", preset, "--model", "tiny", "--duration", "1", "-o", tmp_path / "c.mp4")
    assert result.returncode == 2 and "animation_mode: Video Source needs video_path" in result.stderr
    assert result.stderr.count("\n") == 1
