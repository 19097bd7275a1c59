"""A live video source: one decoder thread per source keeps the newest frame in a slot that the engine reads
without waiting, and keeps the source alive the way vj/audio/sources/kept_stream.py keeps a sound card: a lost
stream, camera or NDI sender holds the last frame, says so on the HUD and is reopened until it is back.

What differs per kind (a file played in real time, a network stream, a camera, NDI) is a small *opener*: a
callable that opens the source and returns a *feed*, an iterator of `Picture`s with a `close()`. Opening errors
and errors while reading are the same to this class: the source is lost, and reopened.
"""

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from vj.reconnect import RETRY_SECONDS, STALL_SECONDS
from vj.video.frames import VideoFrame
from vj.video.sources.pictures import one_line

logger = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 1.0  # how long close() waits for the decoder thread (a blocked read) before leaving it


@dataclass(frozen=True)
class Picture:
    """One decoded picture as a feed yields it; its conversion to the show's size waits until the slot takes it."""

    time: float  # seconds on the source's own timeline
    rgb: Callable  # (width, height) -> uint8 height x width x 3, read-only
    index: int | None = None  # the source's own frame number (a file's), or None: counted from connecting


class Feed(Protocol):
    """An opened source: iterating yields its pictures (blocking at most about STALL_SECONDS for each, then
    raising); running out means the source ended. close() lets the file, stream or device go."""

    def __iter__(self) -> Iterator[Picture]: ...

    def close(self) -> None: ...


class Opener(Protocol):
    """Opens one source; called on the decoder thread, again after each loss."""

    label: str  # how warnings and logs name it: "video udp://0.0.0.0:9000"
    description: str  # VideoSource.description

    def __call__(self, closing: threading.Event) -> Feed: ...


class RealTime:
    """Paces pictures by their time: `wait(t)` returns when picture time `t` is due on the wall clock at `rate`
    (video seconds per second), or at once when it is late. `late(t)` says that `t` is already past."""

    def __init__(self, closing, rate=1.0, catch_up=None):
        self.closing = closing
        self.rate = rate
        self.catch_up = catch_up  # seconds behind after which the clock restarts at the picture (a live stream)
        self.origin = None  # (picture time, monotonic time) of the clock's start

    def due(self, t):
        if self.origin is None:
            self.origin = (t, time.monotonic())
        t0, w0 = self.origin
        return w0 + (t - t0) / self.rate

    def late(self, t):
        return self.origin is not None and time.monotonic() > self.due(t)

    def wait(self, t):
        """False when closing."""
        delay = self.due(t) - time.monotonic()
        if self.catch_up is not None and -delay > self.catch_up:
            self.origin = (t, time.monotonic())
            delay = 0
        return not (delay > 0 and self.closing.wait(delay))

    def shift(self, seconds):
        """Move the clock's start by `seconds` of picture time (a file starting again: it plays on)."""
        if self.origin is not None:
            self.origin = (self.origin[0] - seconds, self.origin[1])


class LiveVideo:
    """VideoSource for a show: the newest frame of `opener`'s source at (width, height), decoded on its own thread.

    frame_for(t) answers the newest frame at once, whatever `t` (None before the first). A source that fails to
    open, raises while read or ends is lost: the slot keeps its last frame, `warning` says so, and the thread
    reopens it at once and then every `retry_seconds` until it delivers a frame again.
    """

    def __init__(self, opener, width, height, *, stall_timeout=STALL_SECONDS, retry_seconds=RETRY_SECONDS):
        self.opener = opener
        self.description = opener.description
        self.width, self.height = width, height
        self.stall_timeout = stall_timeout
        self.retry_seconds = retry_seconds
        self._changed = threading.Condition()  # notified on each new frame and each change of state
        self._closing = threading.Event()
        self._slot = None  # the newest VideoFrame (one reference: replacing it is atomic)
        self._handed = None  # the frame frame_for answered last
        self._lost = "connecting"  # why there is no live source now; None while frames arrive
        self._connected_once = False
        self.decoded = self.used = self.errors = 0
        self.attempts = 0  # failed reopen attempts since the source was lost
        self.connections = 0  # times the source was opened and delivered a frame
        self._thread = threading.Thread(target=self._run, name="vj-video-in", daemon=True)
        self._thread.start()

    # the engine's side: never waits

    def frame_for(self, t):
        frame = self._slot
        if frame is not None and frame is not self._handed:
            self._handed = frame
            self.used += 1
        return frame

    def peek(self):
        """The newest frame without counting it as used (a HUD preview, a test)."""
        return self._slot

    @property
    def warning(self):
        lost = self._lost
        if lost is not None:
            if self._connected_once:
                return f"{self.opener.label} lost ({lost}); holding its last frame, reconnecting"
            return f"{self.opener.label}: {lost}" if lost == "connecting" else f"{self.opener.label}: {lost}; retrying"
        age = self._age()
        if age is not None and age > self.stall_timeout:  # a read that blocks longer than it should
            return f"{self.opener.label}: no new frame for {age:.0f} s"
        return None

    def stats(self):
        return {"decoded": self.decoded, "used": self.used, "errors": self.errors, "age_s": self._age()}

    def _age(self):
        frame = self._slot
        return None if frame is None else time.monotonic() - frame.decoded_at

    def wait_until(self, predicate, timeout):
        """Wait (not on the engine thread: for a start-up or a test) until predicate(self) holds, re-checked at
        each new frame and change of state; False after `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def close(self):
        """Stop the thread; a read blocked in the library ends within its own timeout and closes the source then."""
        self._closing.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(CLOSE_WAIT_SECONDS)
        if self._thread.is_alive():
            logger.warning("%s: still waiting for a read to return; left it closing", self.opener.label)

    # the decoder thread

    def _state(self, lost):
        with self._changed:
            self._lost = lost
            self._changed.notify_all()

    def _run(self):
        while not self._closing.is_set():
            try:
                feed = self.opener(self._closing)
            except Exception as exc:  # whatever the library says, keep trying: the show goes on with the last frame
                self._failed(one_line(exc))
                continue
            index = 0
            try:
                for picture in feed:
                    if self._closing.is_set():
                        break
                    rgb = picture.rgb(self.width, self.height)
                    number = picture.index if picture.index is not None else index
                    self._publish(VideoFrame(rgb, number, picture.time, time.monotonic()))
                    index += 1
                else:
                    raise EOFError("the source ended")
            except Exception as exc:
                if not self._closing.is_set():
                    self._failed(one_line(exc), lost=index > 0)
            finally:
                try:
                    feed.close()
                except Exception as exc:
                    logger.info("%s: closing: %s", self.opener.label, one_line(exc))

    def _publish(self, frame):
        with self._changed:
            self._slot = frame
            self.decoded += 1
            if self._lost is not None:
                if self._connected_once:
                    logger.warning("%s is back after %d failed attempt(s)", self.opener.label, self.attempts)
                self._connected_once = True
                self.connections += 1
                self.attempts = 0
                self._lost = None
            self._changed.notify_all()

    def _failed(self, reason, lost=False):
        """A failed open (retried after retry_seconds) or a lost source (reopened at once)."""
        self.errors += 1
        if lost:
            logger.warning(
                "%s lost (%s); trying to reopen it every %g s", self.opener.label, reason, self.retry_seconds
            )
        else:
            self.attempts += 1
            if self.attempts == 1:
                logger.warning("%s: %s; retrying every %g s", self.opener.label, reason, self.retry_seconds)
            else:
                logger.debug("%s: attempt %d: %s", self.opener.label, self.attempts, reason)
        self._state(reason)
        if not lost:
            self._closing.wait(self.retry_seconds)
