"""The newest-frame slot between the engine thread and the display: the display never waits for the engine."""

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShownFrame:
    """An engine frame and what the HUD reports about it (and shows beside it: the control-map thumbnails)."""

    rgb: np.ndarray  # (height, width, 3) uint8
    index: int  # frame number of the engine
    heard_at: float  # time.monotonic() when the newest audio the frame's variables used arrived
    made_at: float  # time.monotonic() when the engine finished it
    previews: tuple = ()  # (h, w, 3) uint8 thumbnails of its control maps, while the control preview is on


class FrameSlot:
    """Holds only the newest frame: `put` replaces it, `take` returns it with whether it is new since the last take."""

    def __init__(self):
        self._lock = threading.Condition()
        self._frame = None
        self._serial = 0
        self._taken = 0
        self.dropped = 0  # frames replaced before the display took them

    def put(self, frame):
        with self._lock:
            if self._frame is not None and self._taken != self._serial:
                self.dropped += 1
            self._frame = frame
            self._serial += 1
            self._lock.notify_all()

    def wait(self, timeout):
        """Wait until a frame not yet taken is there, at most `timeout` seconds; returns whether one is."""
        with self._lock:
            return self._lock.wait_for(lambda: self._taken != self._serial, timeout)

    def take(self):
        """(newest ShownFrame or None, is_new)."""
        with self._lock:
            new = self._taken != self._serial
            self._taken = self._serial
            return self._frame, new
