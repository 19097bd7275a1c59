"""Video out (issue 18): every `--out` target runs on its own thread behind a newest-frame slot, never slows the
caller, reports and retries failures; UDP and SRT streams are received and decoded for real over loopback (by
PyAV; SRT, where PyAV's FFmpeg lacks it, sent and received through the `ffmpeg` command), NDI goes through the
NDI library from a sender process to a receiver process, and the virtual camera, Spout and Syphon go through fake
backends / fake library modules (the real code path stays for real devices). Frames carry their own index
(tests/video_codes.py): no frame after the first keyframe may be missing, and the median latency from `send` to
decode is printed (`pytest -s`)."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

import av
import numpy as np
import pytest

from conftest import ROOT
from video_codes import coded_frame, read_code
from vj.video.frames import OutputError
from vj.video.outputs import stream as stream_module
from vj.video.outputs.ffmpeg_cli import FfmpegStreamOutput, ffmpeg_arguments
from vj.video.outputs import virtual_camera as camera_module
from vj.video.outputs.base import FrameOutput
from vj.video.outputs.spout import SpoutOutput, check_spout
from vj.video.outputs.syphon import SyphonOutput, check_syphon
from vj.video.outputs.targets import check_target, open_output
from vj.video.outputs.threaded import ThreadedOutput
from vj.video.sources import ffmpeg_cli as input_ffmpeg_cli

W = H = 128  # small frames: the tests check transport, order and loss, not picture quality
FPS = 30
PYAV_HAS_SRT = stream_module.ffmpeg_has_srt() is not False
HAS_SRT = PYAV_HAS_SRT or stream_module.srt_through_ffmpeg()  # PyAV's FFmpeg, or the ffmpeg command
needs_srt = pytest.mark.skipif(not HAS_SRT, reason=stream_module.srt_missing())


def udp_port():
    """A loopback UDP port nothing is bound to now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def frame_clock(fps=FPS):
    """The show's frame clock for a sender loop (a pace, not a synchronization)."""
    tick = threading.Event()
    return lambda: tick.wait(1 / fps)


class FakeSink(ThreadedOutput):
    """A target that records what the base asks of it; `fail_opens` opens and the writes in `fail_writes`
    (by write number) fail; a write waits while `gate` is clear."""

    def __init__(self, *, fail_opens=0, fail_writes=(), gate=None, **kw):
        self.calls, self.frames, self.opened_sizes = [], [], []
        self.fail_opens, self.fail_writes, self.gate = fail_opens, set(fail_writes), gate
        self.writes = 0
        self.writing = threading.Event()
        super().__init__("fake:sink", W, H, FPS, **kw)

    def open_sink(self):
        self.calls.append(("open", threading.current_thread().name))
        if self.fail_opens:
            self.fail_opens -= 1
            raise OSError("no receiver here")
        self.opened_sizes.append((self.width, self.height))

    def write_frame(self, rgb, at):
        self.writes += 1
        self.writing.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.writes in self.fail_writes:
            raise OSError("receiver went away")
        self.frames.append(read_code(rgb))

    def close_sink(self):
        self.calls.append(("close", threading.current_thread().name))


# --- the base: newest-frame slot, own thread, stats, warning, reopen ---


def test_send_never_blocks_while_the_receiver_is_stuck():
    gate = threading.Event()
    out = FakeSink(gate=gate)
    try:
        assert isinstance(out, FrameOutput)
        out.send(coded_frame(0, W, H))
        assert out.writing.wait(5)
        durations = []
        for i in range(1, 200):
            start = time.perf_counter()
            out.send(coded_frame(i, W, H))
            durations.append(time.perf_counter() - start)
        assert max(durations) < 0.05, "send waited for the stuck write"
        assert out.stats() == {"sent": 0, "dropped": 198, "errors": 0}  # one in the slot, the rest replaced
        out.stuck_after = 0.0
        assert "stuck" in out.warning
        gate.set()
        assert out.wait_stats(lambda s: s["sent"] == 2, 5)
        assert out.frames == [0, 199], "the newest frame goes next, the replaced ones never"
        assert out.warning is None
    finally:
        gate.set()
        out.close()
    assert all(name == "vj-out-fake:sink" for _, name in out.calls), "open and close on the output's own thread"


def test_a_failing_receiver_is_reported_and_reopened_after_a_pause():
    out = FakeSink(fail_opens=2, fail_writes={2}, retry_pause=0.05)
    try:
        out.send(coded_frame(0, W, H))
        assert out.wait_stats(lambda s: s["sent"] == 1, 5)
        assert out.stats()["errors"] == 2
        out.send(coded_frame(1, W, H))  # the second write fails: closed, reported, reopened
        assert out.wait_stats(lambda s: s["errors"] == 3, 5)
        out.send(coded_frame(2, W, H))
        assert out.wait_stats(lambda s: s["sent"] == 2, 5)
        assert out.warning is None
        assert out.frames == [0, 2]
    finally:
        out.close()
    kinds = [kind for kind, _ in out.calls]
    assert kinds == ["open", "close", "open", "close", "open", "close", "open", "close"]


def test_the_warning_says_why_and_when_it_retries():
    out = FakeSink(fail_opens=10**6, retry_pause=30)
    try:
        assert out.wait_stats(lambda s: s["errors"] == 1, 5)
        assert out.warning == "fake:sink: no receiver here; retrying in 30 s"
        start = time.monotonic()
    finally:
        out.close()
    assert time.monotonic() - start < 2, "close ends the pause at once"
    assert not out._thread.is_alive()


def test_a_slow_receiver_is_reported():
    gate = threading.Event()
    out = FakeSink(gate=gate)
    out.slow_window = 0.0
    try:
        for i in range(20):
            out.send(coded_frame(i, W, H))
        assert out.warning.startswith("fake:sink: slow receiver or encoder: ")
    finally:
        gate.set()
        out.close()


def test_a_new_frame_size_reopens_the_output_at_that_size():
    out = FakeSink()
    try:
        out.send(coded_frame(0, W, H))
        assert out.wait_stats(lambda s: s["sent"] == 1, 5)
        out.send(coded_frame(1, 2 * W, H))
        assert out.wait_stats(lambda s: s["sent"] == 2, 5)
    finally:
        out.close()
    assert out.opened_sizes == [(W, H), (2 * W, H)]
    assert out.frames == [0, 1]


def test_send_after_close_is_ignored_and_a_bad_frame_is_refused():
    out = FakeSink()
    with pytest.raises(ValueError, match="height x width x 3"):
        out.send(np.zeros((H, W), np.uint8))
    out.close()
    out.send(coded_frame(0, W, H))
    assert out.stats() == {"sent": 0, "dropped": 0, "errors": 0}


# --- targets ---


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "--out needs a target"),
        ("rtmp://127.0.0.1/live", "rtmp:// is no output"),
        ("screen", "not an output"),
        ("udp://127.0.0.1", "needs a port"),
        ("udp://127.0.0.1:99999", "needs a port"),
        ("udp://:5000", "needs a host"),
        ("srt://127.0.0.1:9000?mode=sideways", "mode must be listener"),
        ("ndi:", "needs a source name"),
        ("spout:", "needs a sender name"),
        ("syphon:", "needs a server name"),
    ],
)
def test_bad_targets_are_refused_with_one_line(text, words):
    problem = check_target(text)
    assert problem is not None and words in problem and "\n" not in problem
    with pytest.raises(OutputError, match="."):
        open_output(text, W, H, FPS)


def test_good_stream_targets_pass():
    assert check_target("udp://127.0.0.1:5000") is None
    assert check_target("UDP://239.0.0.1:5000?ttl=1") is None
    assert stream_module.stream_url("udp://127.0.0.1:5000") == "udp://127.0.0.1:5000?pkt_size=1316"
    url = stream_module.stream_url("srt://:9000?latency=50000")
    assert url == "srt://:9000?mode=listener&latency=50000&timeout=2000000"


def test_srt_is_refused_where_ffmpeg_lacks_it(monkeypatch):
    monkeypatch.setattr(stream_module, "ffmpeg_has_srt", lambda: False)
    monkeypatch.setitem(input_ffmpeg_cli._PROTOCOLS, "ffmpeg", set())  # no ffmpeg command with it either
    problem = check_target("srt://:9000")
    assert "srt:// needs FFmpeg's srt protocol" in problem and "udp://HOST:PORT" in problem
    assert "ffmpeg command that has srt on PATH" in problem and "\n" not in problem
    monkeypatch.setattr(stream_module, "ffmpeg_has_srt", lambda: True)
    assert check_target("srt://:9000") is None
    assert check_target("srt://127.0.0.1:9000?mode=caller") is None
    assert "needs a host" in check_target("srt://:9000?mode=caller")


def test_srt_goes_through_the_ffmpeg_command_where_pyav_lacks_it(monkeypatch):
    monkeypatch.setitem(input_ffmpeg_cli._PROTOCOLS, "ffmpeg", {"file", "srt", "udp"})  # an ffmpeg with srt
    monkeypatch.setattr(stream_module, "ffmpeg_has_srt", lambda: False)  # PyAV's FFmpeg without it
    assert check_target("srt://:9000") is None
    assert stream_module.stream_class("srt://:9000") is FfmpegStreamOutput
    assert stream_module.stream_class("udp://127.0.0.1:5000") is stream_module.StreamOutput
    out = open_output("srt://127.0.0.1:9?mode=caller", W, H, FPS, start=False)  # the thread (ffmpeg) not started
    assert type(out) is FfmpegStreamOutput and not out.listener
    assert out.url == "srt://127.0.0.1:9?mode=caller&latency=20000&timeout=2000000"
    out.close()
    # the command line: raw frames at the output's even size on stdin, the PyAV path's encoder and muxer
    line = " ".join(ffmpeg_arguments("ffmpeg", out.url, 126, 64, 30))
    assert "-f rawvideo -pix_fmt rgb24 -s 126x64 -framerate 30 -i pipe:0 -vf trim=start_frame=1" in line
    assert "-c:v libx264 -pix_fmt yuv420p -preset ultrafast -tune zerolatency -bf 0 -crf 20 -g 15" in line
    assert line.endswith(f"-muxdelay 0 -flush_packets 1 -max_delay 0 -omit_video_pes_length 0 -f mpegts {out.url}")
    assert "-framerate 30000/1001 " in " ".join(ffmpeg_arguments("ffmpeg", out.url, 64, 64, 30000 / 1001))
    # PyAV's own FFmpeg goes first where it has srt
    monkeypatch.setattr(stream_module, "ffmpeg_has_srt", lambda: True)
    assert stream_module.stream_class("srt://:9000") is stream_module.StreamOutput


def test_spout_and_syphon_are_refused_off_their_systems(monkeypatch):
    assert "Windows only" in check_spout("vj", platform="linux")
    assert "macOS only" in check_syphon("vj", platform="linux")
    if sys.platform not in ("win32", "darwin"):
        assert "Windows only" in check_target("spout:vj")
        assert "macOS only" in check_target("syphon:vj")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert check_spout("vj", platform="win32") == "spout:vj needs the Spout extra: pip install 'vj[spout]' (SpoutGL)"
    assert "pip install 'vj[syphon]'" in check_syphon("vj", platform="darwin")
    assert "pip install 'vj[ndi]'" in check_target("ndi:vj")
    assert "pip install 'vj[virtualcam]'" in check_target("virtualcam")


def test_virtual_camera_needs_a_loopback_device_on_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(camera_module, "loopback_devices", lambda: [])
    if camera_module.importlib.util.find_spec("pyvirtualcam") is not None:
        assert "sudo modprobe v4l2loopback" in check_target("virtualcam")
    monkeypatch.setattr(camera_module, "loopback_devices", lambda: ["/sys/devices/virtual/video4linux/video9"])
    monkeypatch.setattr(camera_module.importlib.util, "find_spec", lambda name, *a: object())
    assert check_target("VirtualCam") is None


# --- UDP and SRT received and decoded over loopback (PyAV; SRT through the ffmpeg command where PyAV lacks it) ---


class Receiver:
    """Decodes an MPEG-TS stream with PyAV on a thread: each frame's code and decode time, until `count` frames
    (or the stream ends, or `stop()`)."""

    def __init__(self, url, count):
        self.url, self.count = url, count
        self.decoded = []  # (code, time.monotonic())
        self.done = threading.Event()
        self.error = None
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="test-receiver", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with av.open(self.url, options={"probesize": "32", "analyzeduration": "0"}, timeout=(15, 5)) as c:
                stream = c.streams.video[0]
                stream.thread_type = "SLICE"
                for packet in c.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.InvalidDataError:
                        if self.decoded:  # after the first keyframe every packet must decode
                            raise
                        continue  # a receiver that joins mid-stream waits for a keyframe, as players do
                    for frame in frames:
                        self.decoded.append((read_code(frame.to_ndarray(format="rgb24")), time.monotonic()))
                    if len(self.decoded) >= self.count or self._stop:
                        break
        except Exception as exc:  # reported by the test that waits on `done`
            self.error = exc
        finally:
            self.done.set()

    def stop(self):
        self._stop = True

    def codes(self):
        return [code for code, _ in self.decoded]


def ffmpeg_receiver(url, count, stderr=subprocess.DEVNULL):
    """An `ffmpeg` process that receives `url` (MPEG-TS) and writes its first `count` frames to stdout as raw
    rgb24, each as decoded (no frame repeated or dropped for a frame rate), then ends (closing its connection).
    No `-fflags nobuffer`: it drops the packets read while probing, the stream's first keyframe with them."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
        + ["-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0"]
        + ["-rw_timeout", "5000000", "-i", url, "-an", "-vsync", "passthrough", "-frames:v", str(count)]
        + ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def ffmpeg_frames(proc, width, height):
    """(rgb, time.monotonic()) of each frame an ffmpeg_receiver writes, until it ends."""
    size = width * height * 3
    while len(data := proc.stdout.read(size)) == size:
        yield np.frombuffer(data, np.uint8).reshape(height, width, 3), time.monotonic()


class FfmpegReceiver(Receiver):
    """The Receiver through an ffmpeg process (ffmpeg_receiver), for SRT where PyAV's FFmpeg has no srt. ffmpeg
    reports decoding errors rather than raising them: any it reports fails the receiver. Frames of `size` only
    (width, height): frames of another size would not decode to their codes."""

    def __init__(self, url, count, size=(W, H)):
        self.size, self.proc = size, None
        super().__init__(url, count)

    def _run(self):
        errors = tempfile.TemporaryFile()
        self.proc = ffmpeg_receiver(self.url, self.count, stderr=errors)
        try:
            for rgb, when in ffmpeg_frames(self.proc, *self.size):
                self.decoded.append((read_code(rgb), when))
                if self._stop:
                    return  # stopped: ffmpeg was ended, not failed
            self.proc.wait(10)
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()
            if said or self.proc.returncode:
                raise OSError(f"ffmpeg receiver (status {self.proc.returncode}): {said[-500:]}")
        except Exception as exc:  # reported by the test that waits on `done`
            self.error = exc
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            errors.close()
            self.done.set()

    def stop(self):
        self._stop = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # ends the read; ffmpeg closes its connection on the way out


def srt_receiver(url, count, size=(W, H)):
    """A receiver of an SRT stream (of frames of `size`): PyAV where its FFmpeg has srt, else the ffmpeg command."""
    return Receiver(url, count) if PYAV_HAS_SRT else FfmpegReceiver(url, count, size)


class Until:
    """An event-like condition for send_until: set when `predicate()` holds."""

    def __init__(self, predicate):
        self.is_set = predicate


def send_until(out, done, sent, first=0, limit=10.0, size=(W, H)):
    """Send coded frames (of `size`) from `first` at the frame rate until `done` is set; record each send time in
    `sent`.
    Each frame waits (up to 2 s) for the previous one to be taken and written, so that a loaded machine, whose
    output thread may not run for a while, never drops a frame in the slot: a frame missing at the receiver is
    then lost on the way."""
    clock, i, end = frame_clock(), first, time.monotonic() + limit
    while not done.is_set() and time.monotonic() < end:
        before = out.stats()
        sent[i] = time.monotonic()
        out.send(coded_frame(i, *size))
        out.wait_stats(lambda s: s["sent"] + s["errors"] > before["sent"] + before["errors"], 2)
        i += 1
        clock()
    return i


def check_received(receiver, sent, label):
    """No frame missing after the first decoded one (a keyframe), all decoded intact; print the latency."""
    assert receiver.error is None, receiver.error
    codes = receiver.codes()
    assert len(codes) >= receiver.count and None not in codes, codes
    assert codes == list(range(codes[0], codes[0] + len(codes))), f"frames missing or out of order: {codes}"
    latencies = [when - sent[code] for code, when in receiver.decoded]
    median = statistics.median(latencies) * 1000
    print(f"\n{label}: {len(codes)} frames from #{codes[0]}, median send->decode latency {median:.1f} ms")
    assert median < 1000
    return median


def test_udp_stream_is_received_and_decoded_without_loss():
    port = udp_port()
    receiver = Receiver(f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000", count=45)
    sent = {}
    with open_output(f"udp://127.0.0.1:{port}", W, H, FPS) as out:
        send_until(out, receiver.done, sent)
        assert out.stats()["errors"] == 0 and out.warning is None
    check_received(receiver, sent, "UDP")
    first = receiver.codes()[0]
    assert first % round(FPS * stream_module.GOP_SECONDS) == 0, "the first decoded frame is a keyframe"


def test_udp_receiver_that_connects_late_or_stops_mid_show():
    port = udp_port()
    url = f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000"
    sent, nobody = {}, threading.Event()
    with open_output(f"udp://127.0.0.1:{port}", W, H, FPS) as out:
        # nobody listens yet: the output goes on, with nothing to report
        nobody_until = threading.Timer(0.3, nobody.set)
        nobody_until.start()
        i = send_until(out, nobody, sent)
        assert out.wait_stats(lambda s: s["sent"] >= 3, 5)
        assert out.stats()["errors"] == 0 and out.warning is None
        late = Receiver(url, count=20)
        i = send_until(out, late.done, sent, first=i)
        check_received(late, sent, "UDP, late receiver")
        # the receiver went away (its stream stopped mid-show): the output goes on, and a new one gets frames
        before = out.stats()["sent"]
        again = Receiver(url, count=20)
        send_until(out, again.done, sent, first=i)
        check_received(again, sent, "UDP, receiver back")
        stats = out.stats()
        assert stats["sent"] > before and stats["errors"] == 0


@needs_srt
def test_srt_listener_stream_is_received_and_decoded_without_loss():
    port = udp_port()
    sent = {}
    with open_output(f"srt://127.0.0.1:{port}", W, H, FPS) as out:
        assert out.listener
        assert isinstance(out, FfmpegStreamOutput) == (not PYAV_HAS_SRT), "through ffmpeg where PyAV lacks srt"
        receiver = srt_receiver(f"srt://127.0.0.1:{port}?mode=caller&latency=20000", count=45)
        send_until(out, receiver.done, sent)
    check_received(receiver, sent, "SRT")


@needs_srt
def test_srt_receiver_that_leaves_and_comes_back():
    port = udp_port()
    url = f"srt://127.0.0.1:{port}?mode=caller&latency=20000"
    sent = {}
    with open_output(f"srt://127.0.0.1:{port}", W, H, FPS, retry_pause=0.1) as out:
        # no receiver yet: waiting is no error, and the caller is never held up
        start = time.perf_counter()
        for i in range(30):
            sent[i] = time.monotonic()
            out.send(coded_frame(i, W, H))  # the last one waits in the slot for the receiver
        assert time.perf_counter() - start < 0.5
        waiting = f"srt://127.0.0.1:{port}: waiting for a receiver to connect (SRT listener)"
        assert out.wait_stats(lambda _: out.warning == waiting, 5), out.warning  # said from the output's thread
        first = srt_receiver(url, count=20)
        i = send_until(out, first.done, sent, first=30)
        check_received(first, sent, "SRT, first receiver")
        # the receiver is gone (closed after its 20 frames): the output notices at its next frames, reopens
        # and waits again
        i = send_until(out, Until(lambda: out.stats()["errors"] >= 1), sent, first=i)
        assert out.stats()["errors"] >= 1
        second = srt_receiver(url, count=20)
        send_until(out, second.done, sent, first=i)
        check_received(second, sent, "SRT, receiver back")


@needs_srt
def test_srt_restarts_at_a_new_frame_size_and_close_ends_it():
    port = udp_port()
    url = f"srt://127.0.0.1:{port}?mode=caller&latency=20000"
    sent, wide = {}, (2 * W, H)
    with open_output(f"srt://127.0.0.1:{port}", W, H, FPS, retry_pause=0.1) as out:
        first = srt_receiver(url, count=10**6)
        i = send_until(out, Until(lambda: len(first.decoded) >= 15), sent)
        # a new size (a show that shrank): the stream ends for this receiver and starts again at the new size
        sent[i] = time.monotonic()
        out.send(coded_frame(i, *wide))  # waits in the slot for the next receiver
        i += 1
        assert first.done.wait(10), "the receiver saw the stream end"
        assert first.codes()[:15] == list(range(first.codes()[0], first.codes()[0] + 15))
        assert out.stats()["errors"] == 0, "a new size is no failure"
        second = srt_receiver(url, count=15, size=wide)
        i = send_until(out, second.done, sent, first=i, size=wide)
        check_received(second, sent, "SRT, at the new size")
        # close ends the stream (through ffmpeg: its process) at once, a receiver connected or not
        third = srt_receiver(url, count=10**6, size=wide)
        send_until(out, Until(lambda: len(third.decoded) >= 5), sent, first=i, size=wide)
        assert len(third.decoded) >= 5, third.error
        process = getattr(out, "_ffmpeg", None)
        start = time.perf_counter()
        out.close()
        assert time.perf_counter() - start < 1.5
        assert third.done.wait(10), "the receiver saw the stream end"
        assert process is None or process.proc.poll() is not None


@needs_srt
def test_srt_caller_to_a_dead_listener_goes_on():
    port = udp_port()
    with open_output(f"srt://127.0.0.1:{port}?mode=caller&connect_timeout=300", W, H, FPS, retry_pause=0.05) as out:
        assert out.wait_stats(lambda s: s["errors"] >= 2, 15)
        start = time.perf_counter()
        out.send(coded_frame(0, W, H))
        assert time.perf_counter() - start < 0.05
        assert "retrying in 0.05 s" in out.warning


# --- NDI: a sender process (vj's NdiOutput) and a receiver process (the NDI library, by ctypes) ---

NDI_ENV = {
    # keep NDI off mDNS (avahi over D-Bus, which may send on every interface): discovery goes by address instead
    "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent",
    "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
}

NDI_SENDER = r"""
import json, sys, threading, time
from video_codes import coded_frame
from vj.video.outputs.targets import open_output
name, size, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
out = open_output("ndi:" + name, size, size, 30)
tick, i, end = threading.Event(), 0, time.monotonic() + seconds
while not stop.is_set() and time.monotonic() < end:
    print(json.dumps({"sent": i, "t": time.monotonic()}), flush=True)
    out.send(coded_frame(i, size, size))
    out.wait_stats(lambda s: s["sent"] + s["errors"] > i, 2)  # no frame dropped in the slot on a loaded machine
    i += 1
    tick.wait(1 / 30)
out.close()
print(json.dumps({"stats": out.stats(), "warning": out.warning}), flush=True)
"""

# The receiver uses the NDI library cyndilib bundles, through ctypes: cyndilib's own receiver holds the GIL while
# it waits (its Finder thread too), which starves a loop like this one and loses frames that NDI delivered.
NDI_RECEIVER = r"""
import ctypes, json, sys, time
import numpy as np
import cyndilib.wrapper.ndi_structs as bundled
from video_codes import read_code
name, count, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lib = ctypes.CDLL(bundled.__file__)  # dlsym through cyndilib's module finds its libndi
class Source(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("url", ctypes.c_char_p)]
class FindCreate(ctypes.Structure):
    _fields_ = [("show_local_sources", ctypes.c_bool), ("groups", ctypes.c_char_p), ("extra_ips", ctypes.c_char_p)]
class RecvCreate(ctypes.Structure):
    _fields_ = [("source", Source), ("color_format", ctypes.c_int), ("bandwidth", ctypes.c_int),
                ("allow_video_fields", ctypes.c_bool), ("name", ctypes.c_char_p)]
class Video(ctypes.Structure):
    _fields_ = [("xres", ctypes.c_int), ("yres", ctypes.c_int), ("fourcc", ctypes.c_int), ("rate_n", ctypes.c_int),
                ("rate_d", ctypes.c_int), ("aspect", ctypes.c_float), ("format", ctypes.c_int),
                ("timecode", ctypes.c_int64), ("data", ctypes.POINTER(ctypes.c_uint8)), ("stride", ctypes.c_int),
                ("metadata", ctypes.c_char_p), ("timestamp", ctypes.c_int64)]
lib.NDIlib_find_create_v2.restype = ctypes.c_void_p
lib.NDIlib_find_wait_for_sources.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
lib.NDIlib_find_get_current_sources.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
lib.NDIlib_find_get_current_sources.restype = ctypes.POINTER(Source)
lib.NDIlib_find_destroy.argtypes = [ctypes.c_void_p]
lib.NDIlib_recv_create_v3.restype = ctypes.c_void_p
lib.NDIlib_recv_capture_v3.argtypes = [ctypes.c_void_p, ctypes.POINTER(Video), ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_uint32]
lib.NDIlib_recv_free_video_v2.argtypes = [ctypes.c_void_p, ctypes.POINTER(Video)]
lib.NDIlib_recv_destroy.argtypes = [ctypes.c_void_p]
start = time.monotonic()
# discovery by address (NDI's port 5960 on 127.0.0.1), which needs no mDNS
finder = lib.NDIlib_find_create_v2(ctypes.byref(FindCreate(True, None, b"127.0.0.1")))
source = None
while source is None and time.monotonic() - start < limit:
    lib.NDIlib_find_wait_for_sources(finder, 500)
    n = ctypes.c_uint32()
    found = lib.NDIlib_find_get_current_sources(finder, ctypes.byref(n))
    for k in range(n.value):
        if found[k].name.decode().endswith("(" + name + ")"):
            source = Source(found[k].name, found[k].url)
if source is None:
    print(json.dumps({"error": "source not found"}), flush=True)
    sys.exit(3)
print(json.dumps({"found": source.name.decode(), "url": source.url.decode()}), flush=True)
receiver = lib.NDIlib_recv_create_v3(ctypes.byref(RecvCreate(source, 2, 100, False, b"vj-test")))  # RGBX, highest
video, got = Video(), 0
while got < count and time.monotonic() - start < limit:
    if lib.NDIlib_recv_capture_v3(receiver, ctypes.byref(video), None, None, 200) == 1:  # a video frame
        now = time.monotonic()
        rows = np.ctypeslib.as_array(video.data, shape=(video.yres * video.stride,))
        rgb = rows.reshape(video.yres, video.stride // 4, 4)[:, : video.xres, :3]
        print(json.dumps({"code": read_code(rgb), "t": now, "size": [video.xres, video.yres]}), flush=True)
        lib.NDIlib_recv_free_video_v2(receiver, ctypes.byref(video))
        got += 1
lib.NDIlib_recv_destroy(receiver)
lib.NDIlib_find_destroy(finder)
"""


def lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_ndi_sender_reaches_a_receiver_through_the_ndi_library(tmp_path):
    pytest.importorskip("cyndilib", reason="the NDI extra is not installed: pip install 'vj[ndi]'")
    name, size, count = f"vj-test-{os.getpid()}", 128, 45
    env = {**os.environ, **NDI_ENV}
    log = tmp_path / "sender.jsonl"
    with open(log, "w") as sender_out:
        sender = subprocess.Popen(
            [sys.executable, "-c", NDI_SENDER, name, str(size), "30"],
            stdin=subprocess.PIPE,
            stdout=sender_out,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            received = subprocess.run(
                [sys.executable, "-c", NDI_RECEIVER, name, str(count), "20"],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=40,
            )
        finally:
            _, err = sender.communicate(input="", timeout=20)  # stdin closed: the sender stops and prints its stats
    out = log.read_text()
    got = lines(received.stdout)
    assert received.returncode == 0, f"receiver: {received.stdout[-500:]} {received.stderr[-2000:]}; sender: {err}"
    assert got[0]["found"].endswith(f"({name})") and got[0]["url"].startswith("127.0.0.1:")
    frames = [g for g in got if "code" in g]
    codes = [g["code"] for g in frames]
    assert len(codes) == count and None not in codes, codes
    assert all(g["size"] == [size, size] for g in frames)
    assert codes == list(range(codes[0], codes[0] + count)), f"frames missing or out of order: {codes}"
    sent = {g["sent"]: g["t"] for g in lines(out) if "sent" in g}
    median = statistics.median(g["t"] - sent[g["code"]] for g in frames) * 1000
    print(f"\nNDI: {count} frames from #{codes[0]}, median send->receive latency {median:.1f} ms")
    # the receiver left after its frames; the sender, stopped after it, had no error (under load it may have sent
    # no frame more than the receiver took: the receiver's leaving and the stop can come together)
    final = lines(out)[-1]
    assert final["stats"]["errors"] == 0 and final["stats"]["sent"] >= codes[0] + count, (final, err[-2000:])


# --- virtual camera, Spout, Syphon: fake backends, the real code path ---


class FakeCameraBackend:
    """A pyvirtualcam backend (register_backend) that keeps the frames; the first `refusals` cameras fail."""

    refusals = 0
    frames = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if FakeCameraBackend.refusals:
            FakeCameraBackend.refusals -= 1
            raise RuntimeError("No v4l2 loopback device found")
        self.size, self.fourcc = (width, height), fourcc

    def send(self, frame):
        FakeCameraBackend.frames.append((read_code(frame.reshape(self.size[1], self.size[0], 3)), self.size))

    def close(self):
        FakeCameraBackend.frames.append(("closed", self.size))

    def device(self):
        return "fake camera"

    def native_fourcc(self):
        return self.fourcc


def test_virtual_camera_through_a_pyvirtualcam_backend():
    pyvirtualcam = pytest.importorskip("pyvirtualcam", reason="the virtual camera extra is not installed")
    pyvirtualcam.register_backend("vj-test", FakeCameraBackend)
    FakeCameraBackend.refusals, FakeCameraBackend.frames = 1, []
    out = camera_module.VirtualCameraOutput("virtualcam", W, H, FPS, backend="vj-test", retry_pause=0.05)
    try:
        assert out.wait_stats(lambda s: s["errors"] == 1, 5)
        assert "No v4l2 loopback device found" in out.warning
        for i in range(3):
            out.send(coded_frame(i, W, H))
            assert out.wait_stats(lambda s, n=i + 1: s["sent"] == n, 5)
        assert out.warning is None
    finally:
        out.close()
    assert FakeCameraBackend.frames == [(0, (W, H)), (1, (W, H)), (2, (W, H)), ("closed", (W, H))]


def fake_spout_module(results):
    """A stand-in for SpoutGL: SpoutSender records its calls; sendImage answers from `results` (True when empty)."""
    calls = []

    class SpoutSender:
        def setSenderName(self, name):
            calls.append(("name", name))

        def sendImage(self, buffer, width, height, gl_format, invert, fbo):
            array = np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
            calls.append(("image", read_code(array), width, height, gl_format, invert, fbo))
            return results.pop(0) if results else True

        def setFrameSync(self, name):
            calls.append(("sync", name))

        def releaseSender(self):
            calls.append(("release",))

    return types.SimpleNamespace(SpoutSender=SpoutSender), calls


def test_spout_through_a_fake_sender(monkeypatch):
    module, calls = fake_spout_module([True, False])
    monkeypatch.setitem(sys.modules, "SpoutGL", module)
    with SpoutOutput("spout:vj", W, H, FPS, retry_pause=0.05) as out:
        out.send(coded_frame(0, W, H))
        assert out.wait_stats(lambda s: s["sent"] == 1, 5)
        out.send(coded_frame(1, W, H))  # refused: reported, released, made again
        assert out.wait_stats(lambda s: s["errors"] == 1, 5)
        out.send(coded_frame(2, W, H))
        assert out.wait_stats(lambda s: s["sent"] == 2, 5)
    assert calls == [
        ("name", "vj"),
        ("image", 0, W, H, 0x1907, False, 0),
        ("sync", "vj"),
        ("image", 1, W, H, 0x1907, False, 0),
        ("release",),
        ("name", "vj"),
        ("image", 2, W, H, 0x1907, False, 0),
        ("sync", "vj"),
        ("release",),
    ]


def test_syphon_through_a_fake_server(monkeypatch):
    calls = []

    class Texture:
        def __init__(self, width, height):
            self.size, self.pixels = (width, height), None

    class SyphonMetalServer:
        device = "fake metal device"

        def __init__(self, name):
            calls.append(("server", name))

        def publish_frame_texture(self, texture):
            calls.append(("publish", read_code(texture.pixels[..., :3]), texture.pixels[0, 0, 3], texture.size))

        def stop(self):
            calls.append(("stop",))

    def copy_image_to_mtl_texture(image, texture):
        assert image.shape == (texture.size[1], texture.size[0], 4)
        texture.pixels = image.copy()

    fakes = {
        "syphon": types.SimpleNamespace(SyphonMetalServer=SyphonMetalServer),
        "syphon.utils": types.SimpleNamespace(),
        "syphon.utils.raw": types.SimpleNamespace(create_mtl_texture=lambda device, w, h: Texture(w, h)),
        "syphon.utils.numpy": types.SimpleNamespace(copy_image_to_mtl_texture=copy_image_to_mtl_texture),
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    with SyphonOutput("syphon:vj", W, H, FPS) as out:
        for i in range(2):
            out.send(coded_frame(i, W, H))
            assert out.wait_stats(lambda s, n=i + 1: s["sent"] == n, 5)
    assert calls == [("server", "vj"), ("publish", 0, 255, (W, H)), ("publish", 1, 255, (W, H)), ("stop",)]
