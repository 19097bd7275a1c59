"""The writer of `vj live --record DIR`: what it writes reads back, show.mp4's pictures and sound, and its failures."""

import errno
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest

from vj.show.recordings import layout, writer
from vj.show.recordings.layout import RecordingError
from vj.show.recordings.writer import Recorder

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60.0
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
DISK_FULL = "recording stopped: disk full (No space left on device); the show goes on"


def solid(colour, height=48, width=64):
    return np.full((height, width, 3), colour, np.uint8)


def nearest_colour(rgb):
    """Which of RED, GREEN, BLUE a decoded (lossy) solid frame is, checked to be solid."""
    mean = rgb.reshape(-1, 3).mean(axis=0)
    assert np.abs(rgb.astype(int) - mean).max() < 12, "not a solid picture"
    return min((RED, GREEN, BLUE), key=lambda c: np.abs(mean - c).sum())


def decoded_video(path):
    """[(time, picture)] of the video stream of an MP4."""
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def decoded_audio(path):
    """(time of the first decoded sample, mono samples) of the audio stream of an MP4."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    return float(frames[0].time), np.concatenate([f.to_ndarray()[0] for f in frames])


def test_lines_presets_and_info_round_trip(tmp_path):
    folder = tmp_path / "show"
    rec = Recorder(folder, {"preset": "club.yaml", "seed": 7}, 48000, 30)
    events = [{"t": i / 10, "kind": "key", "key": "é" if i == 3 else str(i)} for i in range(20)]
    for event in events:
        rec.event(event)
    rec.frame({"n": np.int64(0), "t": np.float32(0.5), "weights": np.array([0.25, 0.75])})
    rec.frame({"n": 1, "t": 0.533})
    rec.preset(0, "prompts:\n  - a cat  # ünïcode\n")
    rec.preset(3, "prompts: []\n")
    rec.close()
    rec.close()
    rec.event({"after": "close"})

    assert layout.read_lines(folder, layout.EVENTS) == events
    assert layout.read_lines(folder, layout.FRAMES) == [
        {"n": 0, "t": 0.5, "weights": [0.25, 0.75]},
        {"n": 1, "t": 0.533},
    ]
    assert (folder / layout.preset_name(0)).read_text(encoding="utf-8") == "prompts:\n  - a cat  # ünïcode\n"
    assert (folder / "presets" / "0003.yaml").read_text(encoding="utf-8") == "prompts: []\n"
    info = layout.read_info(folder)
    assert (info["format"], info["version"], info["preset"], info["seed"]) == ("vj-recording", 1, "club.yaml", 7)
    assert (info["sample_rate"], info["fps"]) == (48000, 30.0)
    assert datetime.fromisoformat(info["started"]).utcoffset().total_seconds() == 0
    assert "ended" in info
    stats = rec.stats()
    assert (stats["events"], stats["frames"], stats["dropped"], stats["stopped"]) == (20, 2, 0, False)
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != layout.INFO)
    assert stats["bytes"] >= on_disk
    assert not (folder / layout.SHOW).exists() and rec.warning is None
    assert not any(p.name.endswith(layout.PARTIAL) for p in folder.rglob("*"))


def test_a_partial_last_line_is_dropped_and_a_foreign_folder_refused(tmp_path):
    folder = tmp_path / "show"
    rec = Recorder(folder, {}, 8000, 10)
    rec.frame({"n": 0})
    rec.close()
    with open(folder / layout.FRAMES, "a") as f:
        f.write('{"n": 1, "t"')
    assert layout.read_lines(folder, layout.FRAMES) == [{"n": 0}]

    (tmp_path / "other").mkdir()
    with pytest.raises(RecordingError, match="is not a vj recording"):
        layout.read_info(tmp_path / "other")


def test_audio_round_trip_in_closed_chunks(tmp_path):
    rate = 8000
    rng = np.random.default_rng(1)
    pcm16 = rng.integers(-32768, 32768, 5 * rate + 1234).astype(np.float32) / 32768
    rec = Recorder(tmp_path / "a", {}, rate, 10)
    for start in range(0, len(pcm16), 777):  # blocks that do not line up with the chunks
        rec.audio(pcm16[start : start + 777])
    rec.close()
    back, back_rate = layout.read_audio(tmp_path / "a")
    assert back_rate == rate and back.dtype == np.float32
    np.testing.assert_array_equal(back, pcm16)
    chunk = int(layout.AUDIO_CHUNK_SECONDS * rate)
    assert [first for first, _ in layout.audio_chunks(tmp_path / "a")] == [0, chunk, 2 * chunk]
    assert (tmp_path / "a" / layout.audio_chunk_name(chunk)).name == f"{chunk:012d}.flac"
    assert rec.stats()["audio_seconds"] == pytest.approx(len(pcm16) / rate)

    floats = rng.uniform(-1, 1, 3 * rate).astype(np.float32)
    floats[:3] = [1.0, -1.0, 1.7]  # the ends of the range, and beyond it: held to [-1, 1]
    rec = Recorder(tmp_path / "b", {}, rate, 10)
    rec.audio(floats)
    rec.close()
    back, _ = layout.read_audio(tmp_path / "b")
    assert len(back) == len(floats)
    np.testing.assert_allclose(back, np.clip(floats, -1, 1), rtol=0, atol=2.0**-23)


def test_show_mp4_holds_the_newest_shown_frame_at_each_tick_with_the_audio_in_sync(tmp_path):
    rate, audio_start = 48000, 0.25
    sound = np.zeros(60000, np.float32)  # 1.25 s
    sound[24000:24048] = 0.9  # a click at show time 0.75
    rec = Recorder(tmp_path / "s", {}, rate, 4)
    rec.shown(solid(RED), 0.0)
    rec.audio_start(audio_start)
    rec.audio_start(9.0)  # the first call counts
    rec.audio(sound[:30000])
    rec.shown(solid(GREEN), 0.5)
    rec.audio(sound[30000:])
    rec.shown(solid(BLUE, 24, 32), 1.0)  # a smaller frame (the out-of-memory fallback) is resized
    rec.close()

    frames = decoded_video(tmp_path / "s" / layout.SHOW)
    assert [t for t, _ in frames] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [nearest_colour(picture) for _, picture in frames] == [RED, RED, GREEN, GREEN, BLUE]
    assert all(picture.shape == (48, 64, 3) for _, picture in frames)
    assert not (tmp_path / "s" / layout.SHOW_VIDEO).exists()
    assert layout.read_info(tmp_path / "s")["audio_start"] == audio_start

    first, samples = decoded_audio(tmp_path / "s" / layout.SHOW)
    encoder_delay = 2048 / rate  # AAC priming, at most two frames
    assert audio_start - encoder_delay <= first <= audio_start
    assert len(sound) <= len(samples) <= len(sound) + 2 * 1024 + 1024
    click = first + np.argmax(np.abs(samples)) / rate
    assert click == pytest.approx(0.75, abs=0.002)
    with av.open(str(tmp_path / "s" / layout.SHOW)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_frames_between_ticks_the_first_tick_and_a_given_size(tmp_path):
    rec = Recorder(tmp_path / "s", {}, 8000, 4, size=(33, 20))
    rec.shown(solid(RED), 0.6)  # nothing before it: the first output frame is at 0.75
    rec.shown(solid(GREEN), 0.7)  # same tick: replaces red, which no output frame would show
    rec.shown(solid(BLUE), 0.75)
    rec.shown(solid(GREEN), 0.8)
    rec.close()
    frames = decoded_video(tmp_path / "s" / layout.SHOW)
    assert [t for t, _ in frames] == [0.75, 1.0]
    assert [nearest_colour(picture) for _, picture in frames] == [BLUE, GREEN]
    assert frames[0][1].shape == (20, 32, 3)  # (width, height) as given, the odd width made even
    assert rec.stats()["video_frames"] == 2
    with av.open(str(tmp_path / "s" / layout.SHOW)) as container:
        assert [s.type for s in container.streams] == ["video"]  # no audio was recorded


def test_without_libx264_the_show_is_mpeg4(tmp_path, monkeypatch):
    real = av.Codec

    def codec(name, mode="r"):
        if name == "libx264":
            raise av.error.FFmpegError(0, "no libx264")
        return real(name, mode)

    monkeypatch.setattr(av, "Codec", codec)
    rec = Recorder(tmp_path / "s", {}, 8000, 4)
    rec.shown(solid(RED), 0.0)
    rec.shown(solid(GREEN), 0.25)
    rec.close()
    assert rec.warning is None
    with av.open(str(tmp_path / "s" / layout.SHOW)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert [nearest_colour(p) for _, p in decoded_video(tmp_path / "s" / layout.SHOW)] == [RED, GREEN]


def test_a_folder_that_is_not_empty_or_not_a_folder_is_refused(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.txt").write_text("x")
    with pytest.raises(RecordingError) as info:
        Recorder(tmp_path / "used", {}, 48000, 30)
    assert str(info.value) == f"recording folder {tmp_path / 'used'} is not empty: give a new folder"
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["old.txt"]

    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="is a file: give a new folder"):
        Recorder(tmp_path / "file", {}, 48000, 30)

    rec = Recorder(tmp_path / "empty" / "new", {}, 48000, 30)  # an empty or missing folder is fine
    rec.close()


class FailingFile:
    """A file whose writes fail with ENOSPC once `full` is set, or wait for `release` once `slow` is set."""

    def __init__(self, file, disk):
        self._file, self._disk = file, disk

    def write(self, data):
        if self._disk.get("full"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self._disk.get("slow"):
            self._disk["entered"].set()
            assert self._disk["release"].wait(WAIT)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


@pytest.fixture
def disk(monkeypatch):
    """The writer's files behind FailingFile: set disk["full"] or disk["slow"] to make its disk fail or stall."""
    state = {"entered": threading.Event(), "release": threading.Event()}
    monkeypatch.setattr(writer, "open", lambda *a, **kw: FailingFile(open(*a, **kw), state), raising=False)
    yield state
    state["release"].set()


def test_a_disk_error_stops_the_recording_with_one_warning_and_the_show_goes_on(tmp_path, disk, caplog):
    rec = Recorder(tmp_path / "s", {}, 8000, 10)
    rec.event({"n": 0})
    assert rec.flush(WAIT)
    disk["full"] = True
    rec.event({"n": 1})
    assert not rec.flush(WAIT)
    assert rec.warning == DISK_FULL
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [DISK_FULL]
    written = rec.stats()["bytes"]

    for n in range(100):  # ignored: nothing is queued, the writer thread is gone
        rec.event({"n": n})
        rec.frame({"n": n})
        rec.audio(np.zeros(800, np.float32))
        rec.shown(solid(RED), n / 10)
        rec.preset(n, "x: 1\n")
    assert not rec._thread.is_alive() and not rec._items
    rec.close()
    rec.close()
    stats = rec.stats()
    assert (stats["stopped"], stats["bytes"], stats["events"], stats["frames"]) == (True, written, 1, 0)
    assert rec.warning == DISK_FULL and len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert layout.read_lines(tmp_path / "s", layout.EVENTS) == [{"n": 0}]


def test_a_disk_error_in_the_show_video_stops_the_recording(tmp_path, disk):
    rec = Recorder(tmp_path / "s", {}, 8000, 10)
    disk["full"] = True
    for n in range(60):
        rec.shown(solid(RED), n / 10)
    rec.close()
    assert rec.warning == DISK_FULL and rec.stats()["stopped"]


def test_a_failed_mux_keeps_the_show_video_and_says_so(tmp_path, monkeypatch):
    def broken(self, stream):
        raise av.error.FFmpegError(0, "no encoder")
        yield

    monkeypatch.setattr(Recorder, "_aac", broken)
    rec = Recorder(tmp_path / "s", {}, 8000, 4)
    rec.shown(solid(RED), 0.0)
    rec.audio(np.zeros(800, np.float32))
    rec.close()
    assert rec.warning.startswith("show.mp4 not made: FFmpegError")
    assert rec.warning.endswith("; the recording keeps show.video.mp4") and "\n" not in rec.warning
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["audio", "events.jsonl", "frames.jsonl", "presets", "recording.json", "show.video.mp4"]
    assert [nearest_colour(p) for _, p in decoded_video(tmp_path / "s" / layout.SHOW_VIDEO)] == [RED]
    assert len(layout.read_audio(tmp_path / "s")[0]) == 800


def test_a_full_queue_drops_the_item_and_stops_while_callers_never_wait(tmp_path, disk):
    rec = Recorder(tmp_path / "s", {}, 8000, 10, max_queue_bytes=64 << 10)
    disk["slow"] = True
    rec.event({"n": 0})
    assert disk["entered"].wait(WAIT)  # the writer is stuck in the disk from here on
    sent = 1
    while not rec.stats()["stopped"]:
        assert sent < 10_000, "the queue never filled"
        rec.event({"n": sent, "pad": "x" * 200})
        sent += 1
    rec.audio(np.zeros(8000, np.float32))  # after the stop: ignored
    rec.event({"n": "ignored"})
    stats = rec.stats()
    assert (stats["dropped"], stats["stopped"]) == (1, True)
    assert (
        rec.warning
        == "recording stopped: the disk cannot keep up (over 0.0625 MiB waiting to be written); the show goes on"
    )

    disk["release"].set()
    rec.close()
    kept = layout.read_lines(tmp_path / "s", layout.EVENTS)
    assert [e["n"] for e in kept] == list(range(sent - 1))  # everything queued before the drop, in order
    assert rec.stats()["events"] == sent - 1


KILLED_SHOW = """
import sys
import numpy as np
from vj.show.recordings.writer import Recorder

rec = Recorder(sys.argv[1], {"test": "kill"}, 8000, 10)
rec.audio_start(0.0)
rng = np.random.default_rng(5)
for n in range(100000):
    rec.frame({"n": n, "t": n / 10})
    rec.audio(rng.integers(-32768, 32768, 800).astype(np.float32) / 32768)
    rec.shown(np.full((24, 32, 3), n % 256, np.uint8), n / 10)
    if n + 1 == int(sys.argv[2]):
        assert rec.flush(60)
        print("ready", flush=True)
    if n + 1 == int(sys.argv[3]):
        sys.stdin.read()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_a_killed_show_leaves_its_complete_lines_audio_chunks_and_video(tmp_path):
    folder, ready, last = tmp_path / "killed", 100, 400
    show = subprocess.Popen(
        [sys.executable, "-c", KILLED_SHOW, str(folder), str(ready), str(last)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert select.select([show.stdout], [], [], WAIT)[0], "the show never said it was ready"
        assert show.stdout.readline() == "ready\n"
        show.send_signal(signal.SIGKILL)  # while it goes on recording
        assert show.wait(WAIT) == -signal.SIGKILL
    finally:
        show.kill()
        show.wait()

    assert layout.read_info(folder)["test"] == "kill"
    frames = layout.read_lines(folder, layout.FRAMES)
    assert len(frames) >= ready
    assert frames == [{"n": n, "t": n / 10} for n in range(len(frames))]

    samples, rate = layout.read_audio(folder)
    rng = np.random.default_rng(5)
    sent = np.concatenate([rng.integers(-32768, 32768, 800).astype(np.float32) / 32768 for _ in range(last)])
    chunk = int(layout.AUDIO_CHUNK_SECONDS * rate)
    assert len(samples) >= (ready * 800 // chunk) * chunk and len(samples) % chunk == 0
    np.testing.assert_array_equal(samples, sent[: len(samples)])

    assert not (folder / layout.SHOW).exists()
    video = decoded_video(folder / layout.SHOW_VIDEO)
    keyframe_interval = int(writer.VIDEO_KEYFRAME_SECONDS * 10)
    assert len(video) >= keyframe_interval  # at least the first fragment of the 100 frames flushed
    assert [t for t, _ in video] == pytest.approx([n / 10 for n in range(len(video))])
    assert [int(picture.mean().round()) for _, picture in video] == pytest.approx(list(range(len(video))), abs=2)
