"""A log that says at most one line a second about inputs dropped in bulk (fuzzed OSC, a flood of MIDI)."""

import threading
import time


class RateLimitedLog:
    """Counts dropped inputs and logs at most one line per `interval` seconds with the count since the last."""

    def __init__(self, logger, what, interval=1.0):
        self._logger = logger
        self._what = what
        self._interval = interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._since = 0
        self.total = 0

    def drop(self, reason):
        """Count one dropped input and log `reason` unless a line was logged within the interval."""
        with self._lock:
            self.total += 1
            self._since += 1
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            count, self._since, self._last = self._since, 0, now
        self._logger.warning(
            "%s dropped (%d since the last report, %d in all): %s", self._what, count, self.total, reason
        )
