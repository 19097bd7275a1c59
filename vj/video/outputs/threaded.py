"""The one way every live output runs: its own thread (named vj-out-TARGET) behind a newest-frame slot.

`send` only copies the frame into the slot (a frame not yet taken is replaced and counted as dropped) and wakes
the thread, so a slow, absent or dead receiver never slows the engine or the window. The thread opens the sink,
writes the newest frame, and on a failure counts an error, closes the sink, says so in `warning` (for the HUD),
waits `retry_pause` seconds and opens it again, until `close`. A subclass only opens, writes and closes
(`open_sink`, `write_frame`, `close_sink`), all three on the output's own thread (a GL context, an SRT socket or a
camera device stays on the thread that made it)."""

import atexit
import logging
import threading
import time
import weakref

import numpy as np

from vj.reconnect import RETRY_SECONDS

log = logging.getLogger(__name__)
_live = weakref.WeakSet()  # outputs not closed yet: closed at exit, so no thread waits in a library call then


@atexit.register
def _close_all():
    for output in list(_live):
        output.close()


def describe(exc):
    """One line for a failure: the exception's message, or its type when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ThreadedOutput:
    """Base of every live output (see the module's text). Satisfies vj.video.outputs.base.FrameOutput."""

    retry_pause = RETRY_SECONDS  # seconds between a failure and the next open
    slow_window = 1.0  # seconds over which drops are counted for the "slow receiver" warning
    slow_share = 0.25  # the share of frames dropped in a window above which the output is reported slow
    stuck_after = 1.0  # seconds one write may take before the output is reported stuck
    close_timeout = 3.0  # seconds close() waits for the thread before leaving it (a daemon) behind

    def __init__(self, target, width, height, fps, *, retry_pause=None, start=True):
        self.target = target
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        if retry_pause is not None:
            self.retry_pause = retry_pause
        self._cond = threading.Condition()
        self._frame = None  # the newest frame not yet taken by the thread, with the time it was sent
        self._frame_at = 0.0
        self._sent = self._dropped = self._errors = 0
        self._problem = None  # why the sink is not open (or was just reopened), for `warning`
        self._busy_since = None  # when the write in progress began
        self._window = (time.monotonic(), 0, 0)  # (start, sent, dropped) of the current slow-window
        self._slow = None
        self._closing = False
        self._logged = None
        self._thread = threading.Thread(target=self._run, name=f"vj-out-{target}", daemon=True)
        if start:
            self._thread.start()
        _live.add(self)

    # --- what a target implements (on the output's thread) ---

    def open_sink(self):
        """Open the connection or device at self.width x self.height, self.fps; raise on failure."""
        raise NotImplementedError

    def write_frame(self, rgb, at):
        """Write one frame (uint8 height x width x 3, C-contiguous) sent at time.monotonic() `at`; raise on
        failure (the sink is then closed and opened again)."""
        raise NotImplementedError

    def close_sink(self):
        """Let the connection or device go: after a failed write, after a failed open (whatever it made before
        failing) and at close."""

    def say(self, text):
        """From `open_sink`: show `text` as the warning while a wait that is no failure goes on (an SRT listener
        waiting for its receiver); a successful open clears it."""
        self._set_problem(f"{self.target}: {text}", error=False)

    @property
    def closing(self):
        """True once close() was called: a sink's blocking call (an interrupt callback) may end early."""
        return self._closing

    # --- FrameOutput ---

    def send(self, rgb):
        """Hand over a frame; never blocks (a copy goes into the slot, the thread does the rest)."""
        frame = np.array(rgb, dtype=np.uint8, order="C", copy=True)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.target}: a frame must be height x width x 3, not {frame.shape}")
        at = time.monotonic()
        with self._cond:
            if self._closing:
                return
            if self._frame is not None:
                self._dropped += 1
            self._frame, self._frame_at = frame, at
            self._cond.notify_all()

    @property
    def warning(self):
        now = time.monotonic()
        with self._cond:
            if self._problem is not None:
                return self._problem
            if self._busy_since is not None and now - self._busy_since > self.stuck_after:
                return f"{self.target}: stuck sending one frame for {now - self._busy_since:.0f} s"
            start, sent, dropped = self._window
            if now - start >= self.slow_window:
                new_sent, new_dropped = self._sent - sent, self._dropped - dropped
                total = new_sent + new_dropped
                self._slow = (
                    f"{self.target}: slow receiver or encoder: {new_dropped} of {total} frames dropped"
                    if total and new_dropped > self.slow_share * total
                    else None
                )
                self._window = (now, self._sent, self._dropped)
            return self._slow

    def stats(self):
        with self._cond:
            return {"sent": self._sent, "dropped": self._dropped, "errors": self._errors}

    def close(self):
        _live.discard(self)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.close_timeout)
            if self._thread.is_alive():
                log.warning("%s: still busy after %.0f s; left behind", self.target, self.close_timeout)

    # --- for tests and benchmarks ---

    def wait_stats(self, predicate, timeout):
        """Wait until predicate(stats()) holds (checked whenever a frame is sent or fails); True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._stats_locked()), timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.target}>"

    # --- the thread ---

    def _stats_locked(self):
        return {"sent": self._sent, "dropped": self._dropped, "errors": self._errors}

    def _wait_closing(self, seconds):
        """Wait `seconds` unless the output is closed first; True when it is closing."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closing, seconds)

    def _set_problem(self, text, error):
        with self._cond:
            self._problem = text
            if error:
                self._errors += 1
            self._busy_since = None
            self._cond.notify_all()
        if text != self._logged:
            self._logged = text
            (log.warning if error else log.info)("%s", text)

    def _run(self):
        is_open = False
        try:
            while True:
                if not is_open:
                    if self._wait_closing(0):
                        return
                    try:
                        self.open_sink()
                    except Exception as exc:
                        self._close_quietly()  # whatever the open made before it failed
                        if self._closing:  # close() ended the open (an interrupted wait): no failure
                            return
                        self._set_problem(
                            f"{self.target}: {describe(exc)}; retrying in {self.retry_pause:g} s", error=True
                        )
                        if self._wait_closing(self.retry_pause):
                            return
                        continue
                    is_open = True
                    with self._cond:
                        self._problem = None
                    if self._logged is not None:
                        log.info("%s: open", self.target)
                        self._logged = None
                with self._cond:
                    self._cond.wait_for(lambda: self._frame is not None or self._closing)
                    if self._closing:
                        return
                    frame, at = self._frame, self._frame_at
                    self._frame = None
                    self._busy_since = time.monotonic()
                if frame.shape[:2] != (self.height, self.width):
                    # the show changed its size: open again at the new one (this frame is sent after)
                    self._close_quietly()
                    is_open = False
                    self.height, self.width = frame.shape[:2]
                    with self._cond:
                        if self._frame is None:
                            self._frame, self._frame_at = frame, at
                        self._busy_since = None
                    continue
                try:
                    self.write_frame(frame, at)
                except Exception as exc:
                    if self._closing:
                        return
                    self._set_problem(
                        f"{self.target}: {describe(exc)}; reopening in {self.retry_pause:g} s", error=True
                    )
                    self._close_quietly()
                    is_open = False
                    if self._wait_closing(self.retry_pause):
                        return
                    continue
                with self._cond:
                    self._sent += 1
                    self._busy_since = None
                    self._cond.notify_all()
        finally:
            if is_open:
                self._close_quietly()

    def _close_quietly(self):
        try:
            self.close_sink()
        except Exception as exc:  # a sink that fails to close is gone all the same
            log.debug("%s: close failed: %s", self.target, describe(exc))
