"""SRT and UDP outputs: the shown frames as H.264 in MPEG-TS (PyAV), for OBS, TouchDesigner, VLC and ffplay.

Encoding: libx264 `ultrafast` + `zerolatency` (no lookahead, no B-frames, sliced threads), a keyframe every half
second (a receiver that connects late shows a picture within half a second), yuv420p at the frame's size cut to
even numbers. Timestamps come from the time each frame was sent, so a receiver plays at the show's real pace even
when the engine runs below the nominal rate or frames are dropped. The muxer writes each frame as it comes
(`flush_packets`, no mux delay, PES lengths given so a demuxer need not wait for the next packet).

`udp://HOST:PORT` sends to HOST (unicast or multicast); nothing answers, so a missing receiver costs nothing and
is never reported. `srt://HOST:PORT` is an SRT **listener** by default (`mode=listener`): the receivers call it
(OBS's Media Source, TouchDesigner's Video Stream In TOP, VLC and ffplay are SRT callers by default), so they
may start, stop and come back in any order while the show goes on; one receiver at a time. Add `?mode=caller` to
push to a listening receiver instead (OBS with `srt://0.0.0.0:9000?mode=listener` in its Media Source, a relay).
Options in the URL's query go to FFmpeg's protocol as given (`latency` is in microseconds, default 20000).

PyAV's wheels have no srt protocol: srt:// then goes through an `ffmpeg` command on PATH that has it
(vj/video/outputs/ffmpeg_cli.py, the same encoder, muxer and URL), and is refused only when neither has it."""

from fractions import Fraction
from urllib.parse import parse_qsl, urlencode, urlsplit

import av

from vj.config.video_keys import scheme_of
from vj.video.outputs import avio
from vj.video.outputs.threaded import ThreadedOutput

TIME_BASE = Fraction(1, 90000)
GOP_SECONDS = 0.5
SRT_DEFAULTS = {"mode": "listener", "latency": "20000", "timeout": "2000000"}  # µs; timeout: a stalled send
UDP_DEFAULTS = {"pkt_size": "1316"}  # 7 TS packets: fits any Ethernet MTU
MUXER_OPTIONS = {"flush_packets": "1", "max_delay": "0", "omit_video_pes_length": "0"}
ENCODER_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0", "crf": "20"}


def ffmpeg_has_srt():
    """Whether PyAV's FFmpeg was built with libsrt (FFmpeg's srt protocol); None when PyAV does not say."""
    try:
        configuration = av._core.library_meta["libavformat"]["configuration"]
    except (AttributeError, KeyError, TypeError):
        return None
    return "--enable-libsrt" in configuration


def srt_missing():
    """Why srt:// is refused on this machine (neither PyAV's FFmpeg nor an ffmpeg command has srt)."""
    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    build = f"PyAV {av.__version__}" + (f" (FFmpeg {ffmpeg})" if ffmpeg else "")
    return (
        f"srt:// needs FFmpeg's srt protocol (libsrt), and {build} was built without it: use udp://HOST:PORT "
        "(OBS, TouchDesigner, VLC and ffplay take it too), or install a PyAV built against an FFmpeg configured "
        "with --enable-libsrt, or put an ffmpeg command that has srt on PATH"
    )


def srt_through_ffmpeg():
    """Whether srt:// goes through the ffmpeg command: PyAV's FFmpeg lacks srt and an ffmpeg on PATH has it."""
    from vj.video.outputs.ffmpeg_cli import command_has_srt

    return ffmpeg_has_srt() is False and command_has_srt()


def check_stream(text):
    """None for a usable srt:// or udp:// target, else one line saying what is wrong."""
    scheme = scheme_of(text)
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or not 0 < port < 65536:
        return f"{text}: needs a port, as in {scheme}://127.0.0.1:9000"
    query = dict(parse_qsl(parts.query))
    mode = query.get("mode", SRT_DEFAULTS["mode"]) if scheme == "srt" else None
    if not parts.hostname and mode != "listener":
        return f"{text}: needs a host, as in {scheme}://127.0.0.1:{port}"
    if mode not in (None, "listener", "caller", "rendezvous"):
        return f"{text}: mode must be listener (the default), caller or rendezvous"
    if scheme == "srt" and ffmpeg_has_srt() is False and not srt_through_ffmpeg():
        return srt_missing()
    return None


def stream_url(text):
    """The URL FFmpeg opens: the target with this output's defaults for what its query does not set."""
    parts = urlsplit(text)
    defaults = SRT_DEFAULTS if scheme_of(text) == "srt" else UDP_DEFAULTS
    query = dict(defaults)
    query.update(parse_qsl(parts.query))
    return parts._replace(scheme=parts.scheme.lower(), query=urlencode(query)).geturl()


def stream_class(target):
    """The output class for an srt:// or udp:// target: through the ffmpeg command where only it has srt."""
    if scheme_of(target) == "srt" and srt_through_ffmpeg():
        from vj.video.outputs.ffmpeg_cli import FfmpegStreamOutput

        return FfmpegStreamOutput
    return StreamOutput


def even_frame(rgb, width, height):
    """The frame cut to even numbers (yuv420p), C-contiguous."""
    height, width = height & ~1, width & ~1
    return rgb if rgb.shape[:2] == (height, width) else rgb[:height, :width].copy()


class StreamOutput(ThreadedOutput):
    """An srt:// or udp:// target (see the module's text)."""

    def __init__(self, target, width, height, fps, **kw):
        self.url = stream_url(target)
        self.listener = scheme_of(target) == "srt" and dict(parse_qsl(urlsplit(self.url).query))["mode"] == "listener"
        self._container = self._stream = self._connection = None
        super().__init__(target, width, height, fps, **kw)

    def say_listening(self):
        """An SRT listener's open waits for its receiver: the warning says so meanwhile."""
        if self.listener:
            self.say("waiting for a receiver to connect (SRT listener)")

    def open_sink(self):
        self.say_listening()
        if avio.AvioConnection.available():
            self._connection = avio.AvioConnection(self.url, interrupted=lambda: self.closing)
            self._container = av.open(self._connection, "w", format="mpegts", container_options=MUXER_OPTIONS)
        else:
            self._container = av.open(self.url, "w", format="mpegts", container_options=MUXER_OPTIONS)
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = self.width & ~1, self.height & ~1, "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        stream.options = {**ENCODER_OPTIONS, "g": str(max(1, round(self.fps * GOP_SECONDS)))}
        self._stream = stream
        self._start = None
        self._last_pts = -1

    def write_frame(self, rgb, at):
        frame = av.VideoFrame.from_ndarray(even_frame(rgb, self.width, self.height), format="rgb24")
        if self._start is None:
            self._start = at
        pts = max(self._last_pts + 1, round((at - self._start) / TIME_BASE))
        frame.pts, frame.time_base = pts, TIME_BASE
        self._last_pts = pts
        self._container.mux(self._stream.encode(frame))

    def close_sink(self):
        container, connection = self._container, self._connection
        self._container = self._stream = self._connection = None
        try:
            if container is not None:
                container.close()
        finally:
            if connection is not None:
                connection.close()
