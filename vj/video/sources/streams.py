"""Network streams (udp://, srt://, rtsp://, rtmp://, http(s)://) for a live show: the opener for
vj/video/sources/newest.py, and the PyAV feed that cameras share.

Live protocols are opened with FFmpeg's low-delay flags and the smallest probe, so the first frame comes with the
first keyframe and no buffering adds latency; every read gives up after the stall timeout (PyAV's read timeout),
so a sender that stops is noticed and the stream reopened. http(s) may be a file rather than a live stream: it is
paced to real time, and played again from the start when it ends.
"""

import threading
import time

import av

from vj.video.frames import VideoError
from vj.reconnect import STALL_SECONDS
from vj.video.sources.newest import Picture, RealTime
from vj.video.sources.pictures import one_line, rgb_of_av

OPEN_SECONDS = 5.0  # how long an open may wait for the stream's first packets (a UDP stream: its first keyframe)
LOW_DELAY = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32", "analyzeduration": "0"}
SCHEME_OPTIONS = {
    "udp": {**LOW_DELAY, "overrun_nonfatal": "1", "fifo_size": "65536"},  # a late reader loses packets, not the stream
    "srt": LOW_DELAY,
    "rtsp": LOW_DELAY,
    "rtmp": LOW_DELAY,
    # http(s) may serve a file with a single keyframe: "nobuffer" drops the packets read while probing (it)
    "http": {},
    "https": {},
}
PACED_SCHEMES = ("http", "https")  # may serve a file as fast as it is read: paced to real time
CATCH_UP_SECONDS = 1.0  # a paced stream this far behind real time restarts its clock rather than racing


def open_av(target, label, *, format=None, options=None, open_timeout=OPEN_SECONDS, read_timeout=STALL_SECONDS):
    """(container, first video stream) of a URL or device; the errors as PyAV raises them (a lost source)."""
    try:
        container = av.open(target, format=format, options=options or {}, timeout=(open_timeout, read_timeout))
    except av.error.ExitError:  # PyAV's timeout interrupts the open
        raise VideoError(f"no answer within {open_timeout:g} s") from None
    except av.error.ProtocolNotFoundError:
        raise VideoError(f"{label}: the FFmpeg in PyAV {av.__version__} has no such protocol") from None
    if not container.streams.video:
        container.close()
        raise VideoError("it has no video stream")
    return container, container.streams.video[0]


_MISSING = {}


def protocol_missing(scheme):
    """None when PyAV's FFmpeg has the protocol `scheme`, else the problem in one line (tried once: an open of
    a local address that fails at once without the protocol)."""
    if scheme not in _MISSING:
        _MISSING[scheme] = None
        try:
            av.open(f"{scheme}://127.0.0.1:9", timeout=(0.05, 0.05)).close()
        except av.error.ProtocolNotFoundError:
            _MISSING[scheme] = (
                f"{scheme}:// input needs an FFmpeg with the {scheme} protocol, and the one in PyAV "
                f"{av.__version__} has none (install PyAV built against a system FFmpeg that has it, or send udp://)"
            )
        except (av.error.FFmpegError, OSError):
            pass
    return _MISSING[scheme]


class AvFeed:
    """A feed (newest.py) of a PyAV container: its video frames as they decode, paced by `clock` if given."""

    def __init__(self, container, stream, read_timeout, clock=None):
        self.container, self.stream = container, stream
        self.read_timeout = read_timeout
        self.clock = clock

    def close(self):
        self.container.close()

    def __iter__(self):
        first = None
        last = time.monotonic()
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:  # joined between keyframes, or a lost packet: wait for the next
                    if time.monotonic() - last > self.read_timeout:
                        raise VideoError(f"no picture for {self.read_timeout:g} s (undecodable data)") from None
                    continue
                for frame in frames:
                    last = time.monotonic()
                    t = float(frame.time) if frame.time is not None else 0.0
                    first = t if first is None else first
                    if self.clock is not None and not self.clock.wait(t):
                        return
                    yield Picture(t - first, rgb_of_av(frame))
        except av.error.ExitError:  # PyAV's read timeout
            raise VideoError(f"no data for {self.read_timeout:g} s") from None
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(one_line(exc)) from None


class StreamOpener:
    """Opener of a network stream URL with low-delay options."""

    def __init__(self, url, scheme, *, stall_timeout=STALL_SECONDS, open_timeout=OPEN_SECONDS):
        self.url = url
        self.scheme = scheme
        self.label = f"video {url}"
        self.description = f"stream {url}"
        self.stall_timeout = stall_timeout
        self.open_timeout = open_timeout

    def __call__(self, closing: threading.Event):
        options = SCHEME_OPTIONS.get(self.scheme, LOW_DELAY)
        try:
            container, stream = open_av(
                self.url, self.label, options=options, open_timeout=self.open_timeout, read_timeout=self.stall_timeout
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(one_line(exc)) from None
        clock = RealTime(closing, catch_up=CATCH_UP_SECONDS) if self.scheme in PACED_SCHEMES else None
        return AvFeed(container, stream, self.stall_timeout, clock)
