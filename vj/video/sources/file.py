"""A video file through PyAV: `VideoFile`, a render's source (the frame shown at t x frame_stride, the same every
time), and `FilePlayback`, the opener that plays a file in real time and loops it for a live show (a rehearsal).

A render asks for output times in order, so decoding goes forward frame by frame; a jump back, or far ahead,
seeks to the keyframe before the target and decodes forward from there. Only the frames handed out are converted
to RGB and resized (PIL, LANCZOS, as pytti). While the engine works on a frame, a helper thread already prepares
the next one (at the next time in the same step); every answer depends on `t` alone, so it is the same frame.
"""

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
from PIL import Image

from vj.video.frames import VideoError, VideoFrame
from vj.video.sources.newest import Picture, RealTime
from vj.video.sources.pictures import fit, one_line, rgb_of_av

logger = logging.getLogger(__name__)

EPSILON = 1e-3  # seconds: a frame stamped this little after the asked time still counts as shown (rounded stamps)
SEEK_AHEAD = 4.0  # seconds: a target further ahead than this is reached by a seek rather than by decoding through
DEFAULT_FPS = 30.0  # for a file that states no frame rate (only the frame numbers and the description use it)
URL_TIMEOUT = 10.0  # seconds an http(s) file may take to answer, to open and to each read (a render waits on it)


def open_file(target, label):
    """(container, its first video stream) of a file or URL; VideoError naming it when PyAV cannot."""
    if isinstance(target, Path) and not target.is_file():
        raise VideoError(f"{label}: no such file")
    try:
        container = av.open(str(target), timeout=None if isinstance(target, Path) else URL_TIMEOUT)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{label} cannot be opened: {one_line(exc)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{label} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def frame_rate(stream):
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else DEFAULT_FPS


def stated_end(container, stream):
    """Where the file says its video ends (seconds, absolute), or None."""
    tb = stream.time_base
    if stream.duration and tb:
        start = stream.start_time if stream.start_time is not None else 0
        return float((start + stream.duration) * tb)
    if container.duration:
        start = container.start_time or 0
        return (start + container.duration) / av.time_base
    return None


class VideoFile:
    """VideoSource for a render: frame_for(t) is the frame shown at video time t x stride (the last frame whose
    time is at most that, counted from the first frame), resized to (width, height). Past the end it holds the
    last frame, or with `loop` starts again (the period: the stated length of the video, else its last frame's
    end). Deterministic: the same t (to the microsecond) gives the same picture, however it was reached.

    With `prefetch`, all decoding happens on one helper thread, which prepares the frame for the next time in
    the step of the last two requests as soon as a frame is handed out."""

    def __init__(self, path, width, height, *, stride=1, loop=False, name=None, prefetch=True):
        self.path = path
        self.label = f"video file {name or path}"
        self.width, self.height = width, height
        self.stride = stride
        self.loop = loop
        self.container, self.stream = open_file(path, self.label)
        self.fps = frame_rate(self.stream)
        self.decoded = self.used = self.errors = 0
        self._decoded_at = None
        self._problem = None
        self._cur = self._peek = None  # (time, av frame): the frame shown now, the one after it
        self._cached = None  # the VideoFrame of _cur, once handed out
        self._eof = False
        try:
            self._seek(None)
        except VideoError:
            self.container.close()
            raise
        if self._cur is None:
            self.container.close()
            raise VideoError(f"{self.label} cannot be decoded: {self._problem or 'no video frame in it'}")
        self.first = self._cur[0]
        end = stated_end(self.container, self.stream)
        self.period = end - self.first if end is not None and end - self.first > 0 else None
        length = f"{self.period:.1f} s" if self.period else "length unknown"
        extra = (f", frame_stride {stride:g}" if stride != 1 else "") + (", looped" if loop else "")
        self.description = f"file {Path(str(name or path)).name} ({self.fps:g} fps, {length}{extra})"
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="vj-video-file") if prefetch else None
        self._ahead = None  # (t, future of the frame for t)
        self._asked = self._handed = None  # the last t asked for, the last frame handed out

    def frame_for(self, t):
        t = round(max(0.0, float(t)), 6)  # the answer is a function of this, prefetched or not
        ahead, self._ahead = self._ahead, None
        if self._worker is None:
            frame = self._frame_at(t)
        elif ahead is not None and ahead[0] == t:
            frame = ahead[1].result()
        else:
            frame = self._worker.submit(self._frame_at, t).result()  # after any prefetch still running
        if self._worker is not None and self._asked is not None and t > self._asked:
            later = round(t + (t - self._asked), 6)
            self._ahead = (later, self._worker.submit(self._frame_at, later))
        self._asked = t
        if frame is not self._handed:
            self._handed = frame
            self.used += 1
        return frame

    def _frame_at(self, t):
        video_time = t * self.stride
        if self.loop:
            period = self._loop_period()
            video_time -= period * math.floor((video_time + EPSILON) / period)
        target = self.first + video_time
        cur = self._cur
        if cur is None or target < cur[0] - EPSILON or target > cur[0] + SEEK_AHEAD:
            self._seek(target)
        self._advance(target)
        return self._handout()

    @property
    def warning(self):
        return None if self._problem is None else f"{self.label}: {self._problem}; holding the last good frame"

    def stats(self):
        age = None if self._decoded_at is None else time.monotonic() - self._decoded_at
        return {"decoded": self.decoded, "used": self.used, "errors": self.errors, "age_s": age}

    def close(self):
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
        self.container.close()

    # decoding

    def _loop_period(self):
        """The stated period, or (once) the end of the last frame found by decoding the whole file."""
        if self.period is None:
            self._seek(self.first)
            self._advance(math.inf)
            last_time, last = self._cur
            duration = getattr(last, "duration", None)
            step = float(duration * last.time_base) if duration and last.time_base else 1 / self.fps
            self.period = max(last_time - self.first + step, 1 / self.fps)
        return self.period

    def _seek(self, target):
        """Position the decoder at the keyframe at or before `target` (None: where it is, at the start) and decode
        that frame into _cur. A demuxer that lands after the target is sent back to the start."""
        if target is not None:
            pts = int(math.floor(max(target, 0.0) / self.stream.time_base))
            for start in (pts, None):
                try:
                    if start is None:
                        self.container.seek(0, backward=True, any_frame=False, stream=self.stream)
                    else:
                        self.container.seek(start, backward=True, any_frame=False, stream=self.stream)
                except (av.error.FFmpegError, OSError) as exc:
                    raise VideoError(f"{self.label}: cannot seek to {target:.3f} s: {one_line(exc)}") from None
                self._restart()
                if self._cur is None or self._cur[0] <= max(target, self.first) + EPSILON:
                    return
                logger.info(
                    "%s: a seek to %.3f s landed at %.3f s; decoding from the start", self.label, target, self._cur[0]
                )
            return
        self._restart()

    def _restart(self):
        self._frames = self.container.decode(self.stream)
        self._cur = self._peek = self._cached = None
        self._eof = False
        self._cur = self._next(None)

    def _next(self, previous):
        """The next decoded (time, frame), or None at the end (or at a frame that cannot be decoded)."""
        if self._eof:
            return None
        try:
            frame = next(self._frames)
        except StopIteration:
            self._eof = True
            return None
        except (av.error.FFmpegError, OSError) as exc:  # a damaged file: hold what decoded (the same every time)
            self.errors += 1
            self._eof = True
            self._problem = f"decoding stopped ({one_line(exc)})"
            logger.warning("%s: %s", self.label, self._problem)
            return None
        self.decoded += 1
        self._decoded_at = time.monotonic()
        if frame.time is not None:
            return (float(frame.time), frame)
        return ((previous[0] + 1 / self.fps) if previous else 0.0, frame)

    def _advance(self, target):
        """Decode forward while the next frame is shown at or before `target`."""
        while True:
            if self._peek is None:
                self._peek = self._next(self._cur)
            if self._peek is None or self._peek[0] > target + EPSILON:
                return
            self._cur, self._peek, self._cached = self._peek, None, None

    def _handout(self):
        if self._cached is None:
            t, frame = self._cur
            rgb = fit(Image.fromarray(frame.to_ndarray(format="rgb24")), self.width, self.height)
            index = round((t - self.first) * self.fps)
            self._cached = VideoFrame(rgb, index, t - self.first, time.monotonic())
        return self._cached


class FilePlayback:
    """Opener (vj/video/sources/newest.py) of a file for a live show: real time at stride x speed, looped."""

    def __init__(self, path, *, stride=1, speed=1.0, name=None):
        self.path = path
        self.label = f"video file {name or path}"
        self.rate = stride * speed
        container, stream = open_file(path, self.label)  # a file that cannot be opened is refused at once
        fps = frame_rate(stream)
        container.close()
        self.frame_interval = 1 / (fps * self.rate)  # wall-clock seconds between frames
        self.description = f"file {Path(str(name or path)).name} ({fps:g} fps, played at {self.rate:g}x, looped)"

    def __call__(self, closing):
        container, stream = open_file(self.path, self.label)
        return _Playback(container, stream, RealTime(closing, self.rate))


class _Playback:
    def __init__(self, container, stream, clock):
        self.container, self.stream, self.clock = container, stream, clock
        self.fps = frame_rate(stream)

    def close(self):
        self.container.close()

    def __iter__(self):
        first = None
        step = 1 / self.fps
        while True:
            last = None
            for frame in self.container.decode(self.stream):
                t = float(frame.time) if frame.time is not None else (last + step if last is not None else 0.0)
                if first is None:
                    first = t
                last = t
                if self.clock.late(t + step):  # its successor is already due: skip it unconverted
                    continue
                if not self.clock.wait(t):
                    return
                yield Picture(t - first, rgb_of_av(frame), round((t - first) * self.fps))
            if last is None:
                raise VideoError("no frame decoded")
            self.clock.shift(last + step - first)  # the next pass's first frame follows the last one
            self.container.seek(0, backward=True, any_frame=False, stream=self.stream)
