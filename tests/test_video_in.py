"""Video in (issue 18), for real: files and a live UDP MPEG-TS stream made with PyAV on loopback, their pictures
carrying their frame index (tests/video_codes.py), so each test checks which frames vj uses: stride, timing,
holding the end, looping, determinism, and a stream's loss and return. Cameras go through the same code with a
fake PyAV container (PyAV's own error types); NDI runs for real wherever cyndilib imports, found by NDI's discovery by
address (its extra IPs), which needs no mDNS (no avahi-daemon).

Run as a script, this file is the test's sender: `python test_video_in.py udp URL FIRST COUNT FPS GOP` or
`... ndi NAME FIRST COUNT`; it prints `started <time.monotonic()>` once its first frame is out.
"""

import errno
import functools
import http.server
import importlib.util
import random
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from video_codes import coded_frame, read_code, write_coded_video
from vj.video.frames import VideoError
from vj.video.sources import cameras, ffmpeg_cli, ndi, streams
from vj.video.sources.base import VideoSource
from vj.video.sources.cameras import Camera, CameraOpener, find_camera, list_cameras
from vj.video.sources.file import VideoFile
from vj.video.sources.newest import LiveVideo
from vj.video.sources.specs import check_video_spec, open_video

FPS = 30


def code(frame):
    return read_code(frame.rgb)


def short_gop_video(path, count, fps=FPS, gop=10, size=(256, 256)):
    """H.264 with a keyframe every `gop` frames and B-frames: seeks land on real keyframes, frames come reordered."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "bf": "2"}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(coded_frame(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """90 coded frames at 30 fps (3 s)."""
    return write_coded_video(tmp_path_factory.mktemp("video") / "clip.mp4", 90, fps=FPS)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sender:
    """This file run as a sender in its own process (so a restart is a real new sender)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def started(self):
        """The sender's time.monotonic() at its first frame (a shared clock on one machine)."""
        line = self.proc.stdout.readline()
        assert line.startswith("started"), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        return float(line.split()[1])

    def wait(self, timeout=20):
        self.proc.wait(timeout)
        assert self.proc.returncode == 0, self.proc.stderr.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def test_the_sources_are_video_sources(clip):
    source = open_video(str(clip), 64, 64)
    assert isinstance(source, VideoSource) and isinstance(source, VideoFile)
    assert source.description == "file clip.mp4 (30 fps, 3.0 s)"
    source.close()
    live = open_video(clip.name, 64, 64, live=True, base=clip.parent)
    assert isinstance(live, VideoSource) and isinstance(live, LiveVideo)
    live.close()


# renders: a file, deterministic


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_render_frame_i_uses_video_frame_i_times_stride_and_holds_the_end(clip, stride):
    source = open_video(str(clip), 96, 64, stride=stride)
    got = [source.frame_for(i / FPS) for i in range(70)]
    assert [code(f) for f in got] == [min(i * stride, 89) for i in range(70)]  # pytti: i x frame_stride, then held
    assert all(f.rgb.shape == (64, 96, 3) and f.rgb.dtype == np.uint8 for f in got)
    assert [f.index for f in got] == [code(f) for f in got]
    assert got[10].time == pytest.approx(10 * stride / FPS)
    stats = source.stats()
    assert stats["used"] == len({f.index for f in got}) and stats["errors"] == 0 and source.warning is None
    source.close()


def test_render_at_another_frame_rate_uses_the_frame_shown_at_t_times_stride(clip):
    """24 fps output from a 30 fps video: output frame i shows the video frame on screen at i/24 x stride."""
    for stride in (1, 2):
        source = open_video(str(clip), 64, 64, stride=stride)
        got = [code(source.frame_for(i / 24)) for i in range(30)]
        assert got == [min(int(i * stride * FPS / 24 + 1e-9), 89) for i in range(30)]
        source.close()


def test_render_loops_when_asked(clip):
    source = open_video(str(clip), 64, 64, stride=2, loop=True)
    assert [code(source.frame_for(i / FPS)) for i in range(0, 200, 7)] == [(i * 2) % 90 for i in range(0, 200, 7)]
    assert "looped" in source.description
    source.close()


def test_render_is_deterministic_whatever_the_order_of_requests(tmp_path):
    path = short_gop_video(tmp_path / "gop.mp4", 150)
    times = [i / FPS for i in range(0, 60)]
    first = open_video(str(path), 80, 80, stride=2)
    again = VideoFile(path, 80, 80, stride=2, prefetch=False)  # no helper thread: the same frames
    shuffled = open_video(str(path), 80, 80, stride=2)
    order = list(range(len(times)))
    random.Random(7).shuffle(order)
    a = [first.frame_for(t).rgb for t in times]
    b = [again.frame_for(t).rgb for t in times]
    c = {i: shuffled.frame_for(times[i]).rgb for i in order}  # backward jumps: keyframe seek, decode forward
    assert [read_code(x) for x in a] == [2 * i for i in range(60)]
    assert all(np.array_equal(a[i], b[i]) and np.array_equal(a[i], c[i]) for i in range(len(times)))
    assert shuffled.stats()["decoded"] > first.stats()["decoded"]
    assert code(shuffled.frame_for(0.0)) == 0
    before = shuffled.stats()["decoded"]
    assert code(shuffled.frame_for(2.4)) == 144  # 4.8 s ahead: a seek to keyframe 140, not 144 frames decoded
    assert shuffled.stats()["decoded"] - before <= 10
    for source in (first, again, shuffled):
        source.close()


def test_frames_are_resized_with_pil_lanczos_as_pytti(clip):
    with av.open(str(clip)) as container:
        decoded = next(container.decode(video=0)).to_image()
    expected = np.asarray(decoded.convert("RGB").resize((100, 60), Image.LANCZOS))
    source = open_video(str(clip), 100, 60)
    frame = source.frame_for(0.0)
    assert np.array_equal(frame.rgb, expected) and not frame.rgb.flags.writeable
    source.close()


def test_a_file_that_cannot_be_decoded_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    sound = tmp_path / "tone.wav"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
    for spec, words in (
        (str(tmp_path / "missing.mp4"), "no such file"),
        (str(bad), "cannot be opened"),
        (str(sound), "has no video stream"),
    ):
        for live in (False, True):
            with pytest.raises(VideoError) as info:
                open_video(spec, 64, 64, live=live)
            message = str(info.value)
            assert spec in message and words in message and "\n" not in message


def test_specs_are_checked_as_text():
    assert check_video_spec("clip.mp4") is None
    assert check_video_spec("udp://0.0.0.0:9000") is None
    assert check_video_spec("camera:0") is None and check_video_spec("Camera:HD Webcam") is None
    assert "unknown scheme ftp://" in check_video_spec("ftp://host/clip.mp4")
    assert "names no camera" in check_video_spec("camera:")
    assert "names no NDI source" in check_video_spec("ndi: ")
    assert "names no host" in check_video_spec("udp://")
    assert "a video source must be" in check_video_spec("")
    assert check_video_spec("missing.mp4", base=Path("/nonexistent")) == "no such video file: missing.mp4"


def test_live_input_is_refused_for_a_render_and_bad_numbers_everywhere(clip):
    for spec in ("udp://127.0.0.1:9000", "srt://127.0.0.1:9000", "camera:0", "ndi:Resolume"):
        with pytest.raises(VideoError, match="is live input: a render reads a file"):
            open_video(spec, 64, 64)
    with pytest.raises(VideoError, match="must be above 0"):
        open_video(str(clip), 64, 64, stride=0)


def test_srt_without_the_protocol_anywhere_says_so(monkeypatch):
    if streams.protocol_missing("srt") is None:
        pytest.skip(f"PyAV {av.__version__}'s FFmpeg has srt")
    monkeypatch.setitem(ffmpeg_cli._PROTOCOLS, "ffmpeg", set())  # no ffmpeg command with it either
    with pytest.raises(VideoError, match="srt:// input needs an FFmpeg with the srt protocol.*or put an ffmpeg"):
        open_video("srt://127.0.0.1:9000", 64, 64, live=True)


@pytest.mark.skipif("srt" not in ffmpeg_cli.ffmpeg_input_protocols(), reason="no ffmpeg command with srt (the sender)")
def test_an_srt_stream_through_pyav_or_the_ffmpeg_command(tmp_path):
    """The sender is the ffmpeg command (an SRT listener, like OBS's output), vj the caller. PyAV's wheels have no
    SRT: then vj reads it through the ffmpeg command too."""
    clips = [write_coded_video(tmp_path / f"{first}.mp4", 60, fps=FPS, first=first) for first in (0, 1000)]
    port = free_udp_port()  # SRT runs over UDP

    def sender(path):
        return subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(path), "-c:v", "libx264"]
            + ["-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-bf", "0", "-f", "mpegts"]
            + [f"srt://127.0.0.1:{port}?mode=listener&latency=20000"],
            stdin=subprocess.DEVNULL,
        )

    proc = sender(clips[0])
    source = open_video(f"srt://127.0.0.1:{port}?latency=20000", 64, 64, live=True, stall_timeout=0.5)
    try:
        if streams.protocol_missing("srt"):
            assert source.description.endswith("(through ffmpeg)")
        frames = []
        assert source.wait_until(lambda s: s.peek() is not None, 10), source.warning
        source.wait_until(lambda s: frames.append(s.peek()) or len(frames) >= 10, 5)
        codes = [code(f) for f in frames]
        assert None not in codes and codes == sorted(codes) and codes[-1] < 60
        proc.wait(10)
        assert source.wait_until(lambda s: s.warning and "lost" in s.warning, 5)
        assert code(source.frame_for(0.0)) >= 50
        proc = sender(clips[1])
        assert source.wait_until(lambda s: code(s.peek()) >= 1000 and s.warning is None, 10), source.warning
    finally:
        proc.kill()
        proc.wait()
        source.close()


# a live show: the decoder thread and its newest-frame slot


def test_a_file_in_a_live_show_plays_in_real_time_at_stride_times_speed_and_loops(tmp_path):
    path = write_coded_video(tmp_path / "loop.mp4", 30, fps=FPS)  # 1 s, played at 2 x 0.75: a pass every 0.67 s
    source = open_video(str(path), 64, 64, live=True, stride=2, speed=0.75)
    assert source.description == "file loop.mp4 (30 fps, played at 1.5x, looped)"
    rate = 1.5
    seen = []

    def wrapped(s):
        frame = s.frame_for(0.0)
        if frame is not None and (not seen or frame is not seen[-1]):
            seen.append(frame)
        return sum(1 for a, b in zip(seen, seen[1:]) if code(b) < code(a)) >= 2  # started again twice

    try:
        assert source.wait_until(wrapped, 10)
    finally:
        source.close()
    codes = [code(f) for f in seen]
    assert None not in codes and codes[0] == 0
    wrap = next(i for i in range(1, len(codes)) if codes[i] < codes[i - 1])
    assert wrap >= 10  # most frames of a pass reach the slot
    assert_paced(seen, rate, period=1.0)
    assert source.stats()["used"] == len(seen) and source.warning is None


def assert_paced(frames, rate, period=None):
    """Each frame is shown when due, at video time / rate after the first: never early; late only when the
    machine is (then later frames are skipped to catch up, so most are on time). Passes of a loop add `period`."""
    passes, lateness = 0, []
    for previous, frame in zip([None, *frames], frames):
        passes += previous is not None and code(frame) < code(previous)
        video_time = code(frame) / FPS + passes * (period or 0)
        lateness.append(frame.decoded_at - frames[0].decoded_at - (video_time - code(frames[0]) / FPS) / rate)
    assert min(lateness) > -0.03, lateness
    assert np.median(lateness) < 0.05, lateness


def test_a_udp_stream_gives_the_newest_frame_holds_it_when_lost_and_reconnects():
    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    source = open_video(url, 64, 64, live=True, stall_timeout=0.5)
    assert source.frame_for(0.0) is None and source.warning == f"video {url}: connecting"
    sender = Sender("udp", f"{url}?pkt_size=1316", 0, 45, FPS, 10)
    try:
        t0 = sender.started()
        assert source.wait_until(lambda s: s.frame_for(0.0) is not None, 10), source.warning
        frames = []
        source.wait_until(lambda s: frames.append(s.peek()) or len(frames) >= 10, 5)
        codes = [code(f) for f in frames]
        assert None not in codes and codes == sorted(codes)  # in order, every picture intact
        latencies = [f.decoded_at - (t0 + code(f) / FPS) for f in frames]
        assert 0 < np.median(latencies) < 0.5, latencies
        assert source.warning is None
        sender.wait()
        assert source.wait_until(lambda s: s.warning and "lost" in s.warning, 5)
        held = source.frame_for(0.0)
        start = time.perf_counter()
        for _ in range(100):
            assert source.frame_for(0.0) is held  # the last frame, at once, while the thread waits on the network
        assert time.perf_counter() - start < 0.05
        assert code(held) >= 40 and "holding its last frame" in source.warning
        sender = Sender("udp", f"{url}?pkt_size=1316", 1000, 45, FPS, 10)
        back = source.wait_until(lambda s: s.peek() is not None and code(s.peek()) >= 1000 and s.warning is None, 10)
        assert back, source.warning
        stats = source.stats()
        assert stats["errors"] >= 1 and stats["decoded"] >= 30 and stats["age_s"] < 1
        assert source.connections == 2
    finally:
        sender.stop()
        source.close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_a_file_for_a_render_and_a_stream_paced_to_real_time_for_a_show(clip, tmp_path):
    ts = tmp_path / "clip.ts"
    short = write_coded_video(tmp_path / "short.mp4", 30, fps=FPS)  # 1 s
    with av.open(str(short)) as source, av.open(str(ts), "w", format="mpegts") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    live = None
    try:
        render = open_video(f"{base}/clip.mp4", 64, 64, stride=2)
        assert [code(render.frame_for(i / FPS)) for i in (0, 10, 44, 50, 3)] == [0, 20, 88, 89, 6]
        render.close()
        live = open_video(f"{base}/clip.ts", 64, 64, live=True)
        seen = []

        def wrapped(s):
            frame = s.peek()
            if frame is not None and (not seen or frame is not seen[-1]):
                seen.append(frame)
            return len(seen) > 20 and code(seen[-1]) < code(seen[-2])  # it ended and started again

        assert live.wait_until(wrapped, 10), live.warning
        run = seen[:-1]
        assert [code(f) for f in run[:5]] == [0, 1, 2, 3, 4]  # every frame, in order
        assert_paced(run, 1.0)  # paced to real time, not read as fast as the server sends
    finally:
        if live is not None:
            live.close()
        server.shutdown()


# cameras: the same thread through a fake of PyAV's capture


class DeviceInfo:
    """av.DeviceInfo as av.enumerate_input_devices gives it."""

    def __init__(self, name, description, media_types):
        self.name, self.description, self.media_types = name, description, media_types


class FakeFrame:
    """A decoded PyAV video frame as the sources use it: its time, and reformat(...).to_ndarray()."""

    def __init__(self, index, t):
        self.index, self.time = index, t

    def reformat(self, width, height, format, interpolation=None):
        assert format == "rgb24"
        return type("Reformatted", (), {"to_ndarray": lambda _: coded_frame(self.index, width, height)})()


class FakePacket:
    def __init__(self, frame):
        self.frame = frame

    def decode(self):
        return [self.frame]


class FakeCapture:
    """A camera as PyAV shows it: av.open(device, format=...) gives a container whose demux yields packets until
    the camera is unplugged (av.error.OSError ENODEV); while unplugged, av.open raises FileNotFoundError."""

    def __init__(self, device):
        self.device = device
        self.plugged = True
        self.next_code = 0
        self.opens = []
        self.refused = 0

    def open(self, target, format=None, options=None, timeout=None):
        self.opens.append((target, format, options, timeout))
        if not self.plugged:
            self.refused += 1
            raise av.error.FileNotFoundError(errno.ENOENT, "No such file or directory", target)
        return FakeContainer(self)


class FakeContainer:
    def __init__(self, capture):
        self.capture = capture
        self.streams = type("Streams", (), {"video": [object()]})()
        self.closed = False

    def demux(self, stream):
        capture = self.capture
        while True:
            if not capture.plugged:
                raise av.error.OSError(errno.ENODEV, "No such device", capture.device)
            time.sleep(0.005)  # the camera's frame period (200 fps), not a synchronization
            capture.next_code += 1
            yield FakePacket(FakeFrame(capture.next_code, capture.next_code / 200))

    def close(self):
        self.closed = True


def fake_v4l2(tmp_path, monkeypatch, nodes):
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    for node, (index, name) in nodes.items():
        (dev / node).touch()
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
        (sysfs / node / "index").write_text(f"{index}\n")
    monkeypatch.setattr(cameras, "DEV", dev)
    monkeypatch.setattr(cameras, "SYSFS", sysfs)
    monkeypatch.setattr(sys, "platform", "linux")
    return dev


def test_cameras_are_listed_from_v4l2_nodes_with_their_sysfs_names(tmp_path, monkeypatch):
    dev = fake_v4l2(
        tmp_path, monkeypatch, {"video0": (0, "HD Webcam"), "video1": (1, "HD Webcam"), "video2": (0, "USB Capture")}
    )
    assert list_cameras() == [
        Camera(0, "HD Webcam", str(dev / "video0")),
        Camera(1, "USB Capture", str(dev / "video2")),
    ]
    assert find_camera("usb").device == str(dev / "video2") and find_camera("1").name == "USB Capture"
    with pytest.raises(VideoError, match="no camera '5'; cameras: 0 'HD Webcam', 1 'USB Capture'"):
        find_camera("5")


def test_cameras_elsewhere_come_from_pyav_or_say_what_listing_needs(monkeypatch):
    devices = [
        DeviceInfo("@device_pnp_1", "Integrated Camera", ["video"]),
        DeviceInfo("@device_cm_2", "Microphone", ["audio"]),
    ]
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(av, "enumerate_input_devices", lambda fmt: devices if fmt == "dshow" else [], raising=False)
    assert list_cameras() == [Camera(0, "Integrated Camera", "@device_pnp_1")]
    assert cameras.device_target(list_cameras()[0], "dshow") == "video=@device_pnp_1"
    monkeypatch.delattr(av, "enumerate_input_devices", raising=False)
    with pytest.raises(VideoError, match="listing cameras needs a PyAV with av.enumerate_input_devices"):
        list_cameras()
    assert find_camera("Integrated Camera").device == "Integrated Camera"  # dshow finds it by name itself
    with pytest.raises(VideoError, match="listing cameras needs"):
        find_camera("0")  # but not by number

    def unlisted(fmt):
        raise av.error.FFmpegError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(av, "enumerate_input_devices", unlisted, raising=False)
    with pytest.raises(VideoError, match=r"listing cameras \(avfoundation\) failed: \[Errno 38\] Function not"):
        list_cameras()
    camera = find_camera("1")  # avfoundation opens "1" (an index) or a name itself
    assert camera == Camera(1, "1", "1") and cameras.device_target(camera, "avfoundation") == "1"
    monkeypatch.setattr(sys, "platform", "sunos5")
    with pytest.raises(VideoError, match="cameras are not supported on sunos5"):
        open_video("camera:0", 64, 64, live=True)


@pytest.mark.parametrize("platform", ["linux", "win32", "darwin"])
def test_a_camera_unplugged_holds_its_last_frame_and_comes_back(tmp_path, monkeypatch, platform):
    if platform == "linux":
        device = str(fake_v4l2(tmp_path, monkeypatch, {"video0": (0, "HD Webcam")}) / "video0")
        expected = (device, "v4l2", {}, (streams.OPEN_SECONDS, 0.5))
    else:
        device = "@device_pnp_7" if platform == "win32" else "0x1420000005ac8600"
        listing = [DeviceInfo(device, "HD Webcam", ["video"])]
        monkeypatch.setattr(sys, "platform", platform)
        monkeypatch.setattr(av, "enumerate_input_devices", lambda fmt: listing, raising=False)
        expected = {
            "win32": (f"video={device}", "dshow", {}, (streams.OPEN_SECONDS, 0.5)),
            "darwin": (device, "avfoundation", {"framerate": "30"}, (streams.OPEN_SECONDS, 0.5)),
        }[platform]
    capture = FakeCapture(device)
    monkeypatch.setattr(av, "open", capture.open)
    source = LiveVideo(CameraOpener("webcam", stall_timeout=0.5), 16, 16, stall_timeout=0.5, retry_seconds=0.02)
    assert source.description == f"camera 0 'HD Webcam' ({expected[1]} {device})"
    try:
        assert source.wait_until(lambda s: s.peek() is not None and s.peek().index >= 5, 5), source.warning
        assert capture.opens[0] == expected
        capture.plugged = False
        assert source.wait_until(lambda s: s.warning and "lost" in s.warning and capture.refused >= 2, 5)
        held = source.frame_for(0.0)
        assert code(held) is not None and source.frame_for(1.0) is held
        assert "No such file or directory" in source.warning and "holding its last frame" in source.warning
        back_from = capture.next_code
        capture.plugged = True
        assert source.wait_until(lambda s: s.warning is None and code(s.peek()) > back_from, 5), source.warning
        assert source.stats()["errors"] >= 3 and source.connections == 2
    finally:
        source.close()
    assert not source._thread.is_alive()


# NDI (the optional extra)


def test_ndi_without_the_extra_says_how_to_add_it(monkeypatch):
    for name in ("cyndilib", "cyndilib.finder"):
        monkeypatch.setitem(sys.modules, name, None)  # what an uninstalled package looks like to import
    message = "ndi:NAME needs the NDI extra: pip install 'vj[ndi]'"
    with pytest.raises(VideoError) as info:
        open_video("ndi:Resolume", 64, 64, live=True)
    assert str(info.value) == message
    with pytest.raises(VideoError, match=r"needs the NDI extra"):
        ndi.list_ndi_sources(0.1)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert check_video_spec("ndi:Resolume") == message


@pytest.fixture
def ndi_by_address(tmp_path, monkeypatch):
    """NDI's discovery by address, here and in the sender: 127.0.0.1 as an extra IP in an NDI configuration file
    (ndi.py's docstring), and mDNS kept off (avahi over D-Bus, which may send on every interface). NDI reads its
    configuration at its first use in a process: the pytest process's is this test (the other NDI tests run NDI in
    processes of their own)."""
    pytest.importorskip("cyndilib", reason="cyndilib is not installed (the NDI extra: pip install 'vj[ndi]')")
    (tmp_path / ndi.CONFIG_FILE).write_text('{"ndi": {"networks": {"ips": "127.0.0.1"}}}')
    monkeypatch.setenv("NDI_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
    assert ndi.extra_ips() == ["127.0.0.1"]


def test_ndi_extra_ips_are_read_as_ndi_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("NDI_CONFIG_DIR", str(tmp_path))
    assert ndi.extra_ips() == []
    message = str(ndi.not_found("Resolume", []))
    assert message.startswith("no NDI source 'Resolume' (sources: none found; no extra IPs")
    assert str(tmp_path / "ndi-config.v1.json") in message
    (tmp_path / "ndi-config.v1.json").write_text('{"ndi": {"networks": {"ips": "10.0.0.7,192.168.10.20, 10.0.0.8"}}}')
    assert ndi.extra_ips() == ["10.0.0.7", "192.168.10.20", " 10.0.0.8"]  # NDI does not trim: the message shows it
    assert "extra IPs asked, from" in str(ndi.not_found("Resolume", ["A (B)"]))
    (tmp_path / "ndi-config.v1.json").write_text('{"ndi": {"networks": {"discovery": "10.0.0.1"}}}')
    assert ndi.extra_ips() == []


def test_ndi_for_real_with_a_sender_that_stops_and_starts_again(ndi_by_address):
    name = f"vj-test-{random.randrange(10**6)}"
    sender = Sender("ndi", name, 0, 90)
    source = None
    try:
        sender.started()
        source = open_video(f"ndi:{name}", 64, 64, live=True, stall_timeout=0.5)
        assert source.wait_until(lambda s: s.frame_for(0.0) is not None, 10), source.warning
        frames = []
        source.wait_until(lambda s: frames.append(s.peek()) or len(frames) >= 10, 5)
        codes = [code(f) for f in frames]
        assert None not in codes and codes == sorted(codes)  # SpeedHQ keeps the coded blocks readable
        assert any(name in n for n in ndi.list_ndi_sources(0.5))
        sender.wait()
        assert source.stats()["decoded"] >= 0.7 * (89 - codes[0])  # nearly every frame arrives (the frame sync)
        assert source.wait_until(lambda s: s.warning and "lost" in s.warning, 5)
        sender = Sender("ndi", name, 1000, 60)
        assert source.wait_until(lambda s: s.peek() is not None and code(s.peek()) >= 1000, 15), source.warning
    finally:
        sender.stop()
        if source is not None:
            source.close()


# the sender


def send_udp(url, first, count, fps, gop):
    with av.open(url, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "bf": "0"}
        t0 = time.monotonic()
        print(f"started {t0}", flush=True)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(coded_frame(first + i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
            time.sleep(max(0.0, t0 + (i + 1) / fps - time.monotonic()))  # real time


def send_ndi(name, first, count, fps=FPS):
    from cyndilib.sender import Sender as NdiSender
    from cyndilib.video_frame import VideoSendFrame
    from cyndilib.wrapper.ndi_structs import FourCC

    sender = NdiSender(name)
    frame = VideoSendFrame()
    frame.set_fourcc(FourCC.RGBA)
    frame.set_frame_rate(Fraction(fps))
    frame.set_resolution(256, 256)
    sender.set_video_frame(frame)
    alpha = np.full((256, 256, 1), 255, np.uint8)
    with sender:
        t0 = time.monotonic()
        print(f"started {t0}", flush=True)
        for i in range(count):
            sender.write_video(np.concatenate([coded_frame(first + i), alpha], axis=2).ravel())
            time.sleep(max(0.0, t0 + (i + 1) / fps - time.monotonic()))


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "udp":
        send_udp(rest[0], *map(int, rest[1:]))
    else:
        send_ndi(rest[0], *map(int, rest[1:]))
