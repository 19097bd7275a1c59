"""`vj live --record DIR` and `vj replay DIR` (issue 20): a real show (tiny model, a rehearsal file, headless,
OSC scene and control changes, a hot reload, a blackout) recorded and replayed bit-identically; live analysis
equal to the recorded audio analysed again; a re-render at another size and rate with the audio in sync; a show
killed by SIGKILL replays up to its last frame; bad folders and options are one line."""

import json
import signal
import subprocess
import sys
import threading

import av
import numpy as np
import pytest
import soundfile
from pythonosc.udp_client import SimpleUDPClient

from conftest import ROOT, interrupt_after_frames, run_vj
from test_video_out import udp_port
from vj.config.loading import load_preset
from vj.show.recordings.reader import RecordedAnalysis, Recording, RecordedTimeline
from vj.show.recordings.layout import RecordingError

RATE = 48000
PRESET = """\
scenes: a forest:fLo+1 || a city:1+fHi || the sea
model: tiny
width: 64
height: 64
frames_per_second: 8
transition_time: 0.5
input_audio_filters:
  - {variable_name: fLo, f_center: 110, f_width: 60}
  - {variable_name: fHi, f_center: 3000, f_width: 2000}
controls:
  - {name: knob1, default: 0.2}
translate_x: knob1*4
"""


def track(path, seconds=30.0):
    """A 16-bit track (so its FLAC copy is exact): a gated bass tone and noise ticks."""
    t = np.arange(int(RATE * seconds)) / RATE
    noise = np.random.default_rng(0).standard_normal(len(t)) * (t % 0.5 < 0.05)
    signal_ = 0.3 * np.sin(2 * np.pi * 110 * t) * (np.sin(2 * np.pi * 2 * t) > 0) + 0.1 * noise
    soundfile.write(str(path), signal_.astype(np.float32), RATE, subtype="PCM_16")
    return path


class LiveShow:
    """`vj live` in a subprocess, headless, recording, with OSC on loopback; `status()` asks it over OSC."""

    def __init__(self, tmp_path, record):
        self.preset = tmp_path / "show.yaml"
        self.preset.write_text(PRESET)
        audio = track(tmp_path / "track.wav")
        self.osc_port = udp_port()
        args = [sys.executable, "-m", "vj", "live", self.preset, "--audio", audio, "--no-playback", "--headless"]
        args += ["--out", f"udp://127.0.0.1:{udp_port()}", "--osc", f"127.0.0.1:{self.osc_port}", "--device", "cpu"]
        args += ["--duration", "120", "--record", record]
        self.process = subprocess.Popen(list(map(str, args)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for line in self.process.stdout:  # the greeting's last line: the show is up
            if b"keys:" in line:
                break
        else:
            raise AssertionError(self.process.stderr.read().decode()[-3000:])
        self.client = SimpleUDPClient("127.0.0.1", self.osc_port)

    def send(self, address, *args):
        self.client.send_message(address, list(args))

    def status(self):
        self.send("/vj/status")
        return json.loads(next(self.client.get_messages(30)).params[0])

    def until(self, predicate):
        """Ask the show for its status until `predicate(status)` (each question waits for the show's answer)."""
        while True:
            status = self.status()
            if predicate(status):
                return status

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        self.process.wait(60)
        self.client.close()
        return self.process.returncode


def frames_recorded(status):
    return status["recording"]["frames"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A show recorded with a scene change, a control change, a hot reload and a blackout along the way."""
    tmp_path = tmp_path_factory.mktemp("show")
    folder = tmp_path / "rec"
    show = LiveShow(tmp_path, folder)
    try:
        show.until(lambda s: frames_recorded(s) >= 4)
        show.send("/vj/scene", 2)
        show.send("/vj/control/knob1", 0.9)
        show.until(lambda s: s["scene"] == 1 and s["variables"]["knob1"] == 0.9)
        show.preset.write_text(PRESET.replace("the sea", "the deep sea:2").replace("knob1*4", "knob1*6"))
        taken = show.until(lambda s: s["reloads"] == 1)
        reloaded = show.until(lambda s: frames_recorded(s) >= frames_recorded(taken) + 3)
        show.send("/vj/prompt", 1, "a red fox:1 | fog:0.5")
        show.until(
            lambda s: (
                s["recording"]["events"] > reloaded["recording"]["events"]
                and frames_recorded(s) >= frames_recorded(reloaded) + 3
            )
        )
        show.send("/vj/blackout", 1)
        show.until(lambda s: s["blackout"])
        show.send("/vj/blackout", 0)
        last = show.until(lambda s: not s["blackout"])
        show.until(lambda s: frames_recorded(s) >= frames_recorded(last) + 3)
    finally:
        code = show.stop()
    assert code == 0, show.process.stderr.read().decode()[-3000:]
    return folder


def test_the_recording_holds_the_show(recorded):
    recording = Recording.open(recorded)
    kinds = [e["kind"] for e in recording.events]
    assert kinds[0] == "settings" and "preset" in kinds and "scene" in kinds
    jump = next(e for e in recording.kind("action") if e["action"] == "JumpScene")
    assert jump["source"] == "osc" and jump["fields"] == {"index": 1}
    assert [e["fields"]["on"] for e in recording.kind("action") if e["action"] == "Blackout"] == [True, False]
    seqs = [f["seq"] for f in recording.frames]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 11
    assert {f["version"] for f in recording.frames} == {0, 1, 2}
    (prompt,) = recording.kind("prompt")
    assert (prompt["version"], prompt["scene"], prompt["text"]) == (2, 0, "a red fox:1 | fog:0.5")
    assert any(abs(f["variables"]["knob1"] - 0.9) < 1e-6 for f in recording.frames)  # OSC sends float32
    assert (recorded / "presets" / "0001.yaml").read_text().count("the deep sea") == 1
    samples, rate = recording.audio()
    original, _ = soundfile.read(str(recorded.parent / "track.wav"), dtype="float32")
    assert rate == RATE and np.array_equal(samples, original[: len(samples)])  # exactly as analysed
    with av.open(str(recorded / "show.mp4")) as show:
        assert show.streams.video and show.streams.audio
        times = [float(f.time) for f in show.decode(video=0)]
    # what the audience saw, to the show's end (the last picture held until then)
    assert times[-1] >= recording.frames[-1]["clock"]


def test_replay_is_bit_identical_and_live_equals_offline(recorded, tmp_path):
    result = run_vj("replay", recorded, "--verify", "--frames", tmp_path / "png", "--device", "cpu")
    count = len(Recording.open(recorded).frames)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"frames: {count} of {count} identical to the live ones" in result.stdout
    differences = [line for line in result.stdout.splitlines() if line.startswith("variable ")]
    assert len(differences) == 7 and all(line.endswith(" 0") for line in differences), differences
    assert len(list((tmp_path / "png").glob("*.png"))) == count


def test_a_changed_frame_is_found(recorded, tmp_path):
    copy = tmp_path / "rec"
    copy.mkdir()
    for path in recorded.rglob("*"):
        target = copy / path.relative_to(recorded)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            target.write_bytes(path.read_bytes())
    lines = (copy / "frames.jsonl").read_text().splitlines()
    frame = json.loads(lines[5])
    frame["sha256"] = "0" * 64
    lines[5] = json.dumps(frame)
    (copy / "frames.jsonl").write_text("\n".join(lines) + "\n")
    result = run_vj("replay", copy, "--verify", "--device", "cpu")
    assert result.returncode == 1
    assert f"identical to the live ones; the first that differs is frame 5 (index {frame['index']})" in result.stdout


def test_a_rerender_at_another_size_and_rate_keeps_the_performance(recorded, tmp_path):
    out = tmp_path / "big.mp4"
    result = run_vj("replay", recorded, "-o", out, "--width", "96", "--height", "64", "--fps", "10", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    recording = Recording.open(recorded)
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        container.seek(0)
        sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert (video.width, video.height) == (96, 64) and len(frames) == round(recording.end * 10)
    assert abs(len(sound) / audio.sample_rate - recording.end) < 0.1  # the recording's length, with its audio
    # the recorded audio at its show time: the track's first sample plays at audio_start
    samples, rate = recording.audio()
    offset = int(round(recording.audio_start * rate))  # where the recording's first sample plays in the MP4
    at = max(0, offset) + rate // 4
    n = min(rate // 2, len(sound) - at, len(samples) - (at - offset))
    assert n > rate // 10
    assert np.corrcoef(sound[at : at + n], samples[at - offset : at - offset + n])[0, 1] > 0.95
    # the scene changed when the live show changed it, and the blackout is black where it was
    presets = recording.presets({"frames_per_second": 10})
    timeline = RecordedTimeline(recording, presets)
    change = recording.kind("scene")[0]
    assert timeline.position(change["t"] - 0.01).scene == 0 and timeline.position(change["t"] + 0.6).scene == 1
    on, off = [e["t"] for e in recording.kind("action") if e["action"] == "Blackout"]
    dark = [i for i in range(len(frames)) if on <= i / 10 < off]
    assert all(not frames[i].any() for i in dark) and frames[0].any()


def test_a_show_killed_by_sigkill_replays_to_its_last_frame(tmp_path):
    folder = tmp_path / "rec"
    show = LiveShow(tmp_path, folder)
    show.until(lambda s: frames_recorded(s) >= 8)
    show.stop(signal.SIGKILL)
    recording = Recording.open(folder)
    assert len(recording.frames) >= 1
    result = run_vj("replay", folder, "--verify", "--device", "cpu")
    count = len(recording.frames)
    assert result.returncode == 0 and f"frames: {count} of {count} identical" in result.stdout, result.stderr


def test_the_analysis_again_equals_the_live_one_with_taps_and_a_new_analyzer(tmp_path):
    """LiveAnalysis over blocks as they come, tapped and given a new analyzer mid-way, against the recording's
    audio analysed again with those changes at their samples."""
    from vj.audio.analysis import AudioAnalyzer
    from vj.audio.live_analysis import LiveAnalysis
    from vj.live.recording import ShowRecording

    preset_path = tmp_path / "p.yaml"
    preset_path.write_text(PRESET)
    first = load_preset(preset_path)
    preset_path.write_text(PRESET.replace("f_width: 60", "f_width: 90"))
    second = load_preset(preset_path)
    sizes = iter(np.random.default_rng(1).integers(100, 3000, 80).tolist())
    audio = soundfile.read(str(track(tmp_path / "t.wav", 3.0)), dtype="float32")[0]

    class Blocks:
        """A live source whose blocks come in uneven sizes once `ready` is set."""

        sample_rate = RATE

        def __init__(self):
            self.ready = threading.Event()
            self.at = 0

        def read(self, frames, timeout=None):
            if not self.ready.wait(timeout):
                return audio[:0]
            block = audio[self.at : self.at + next(sizes, 0)]
            self.at += len(block)
            return block

    recording = ShowRecording.start(tmp_path / "rec", {}, PRESET, RATE, 8, 0.0)
    recording.preset_used(first)
    recording.preset_used(second)  # version 0 for both: the analyzer event names what the show had
    seen = []

    class Observer:
        def block(self, samples, position, heard_at):
            recording.block(samples, position, heard_at)
            values = dict(zip(analysis.analyzer.names, analysis.analyzer.values.tolist()))
            seen.append((position + len(samples), values))
            if len(seen) == 20:
                analysis.tap(heard_at)
            if len(seen) == 40:
                analysis.replace(AudioAnalyzer.for_preset(source, second), keep_beats=True, preset=second)

        def event(self, kind, position, fields):
            recording.event(kind, position, fields)

    source = Blocks()
    analysis = LiveAnalysis(source, AudioAnalyzer.for_preset(source, first))
    analysis.observer = Observer()
    source.ready.set()
    assert analysis.wait_for(lambda snap: len(seen) >= 80, 60) is not None
    analysis.close()
    record = {"seq": 0, "index": 0, "clock": 0.0, "t": 0.0, "sha256": "", "variables": {}, "scene": 0, "mix": 1.0}
    recording.recorder.frame({**record, "version": 0})
    recording.close()
    again = Recording.open(tmp_path / "rec")
    assert [e["what"] for e in again.kind("analysis")] == ["tap", "analyzer"]
    offline = RecordedAnalysis(again, {0: second})  # the analyzer event names version 0: the new filters
    offline.analyzer = AudioAnalyzer.for_preset(offline.analyzer.source, first)  # and the show began with these
    for sample, values in seen:
        assert offline.values(sample) == values, sample


def test_bad_folders_and_options_are_one_line(tmp_path, recorded):
    with pytest.raises(RecordingError, match="not found"):
        Recording.open(tmp_path / "nothing")
    missing = run_vj("replay", tmp_path / "nowhere", "--verify")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr
    (tmp_path / "foreign").mkdir()
    foreign = run_vj("replay", tmp_path / "foreign")
    assert foreign.returncode == 2 and "is not a vj recording" in foreign.stderr and foreign.stderr.count("\n") == 1
    unknown = run_vj("replay", recorded, "--preset-override", "widht=96")
    assert unknown.returncode == 2 and "unknown preset key 'widht' (did you mean 'width'?)" in unknown.stderr
    bad = run_vj("replay", recorded, "--preset-override", "width=wide", "-o", tmp_path / "x.mp4")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "width: expected" in bad.stderr, bad.stderr
    both = run_vj("replay", recorded, "--verify", "--fps", "12")
    assert both.returncode == 2 and "--verify compares the live frames" in both.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    refused = run_vj("live", tmp_path / "full" / "x", "--record", tmp_path / "full")
    assert (
        refused.returncode == 2 and "--record" in refused.stderr and "is not empty: give a new folder" in refused.stderr
    )


def test_ctrl_c_mid_rerender_leaves_a_playable_file(recorded, tmp_path):
    """A real SIGINT to a running re-render, sent once its progress bar shows 5 frames or more."""
    import re

    out = tmp_path / "cut.mp4"
    args = ["replay", recorded, "-o", out, "--fps", "120", "--width", "128", "--height", "128", "--device", "cpu"]
    status, rest = interrupt_after_frames(args)
    assert status == 130, rest[-2000:]
    done = int(re.search(r"interrupted; (\d+) of \d+ frames", rest).group(1))
    assert done >= 5 and "Traceback" not in rest
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == done
