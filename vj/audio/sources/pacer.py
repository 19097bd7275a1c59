"""Real-time pacing by the wall clock, for audio that no sound card paces: the silence of a lost device and a
rehearsal file read without playing it."""

import time

MIN_PACED = 256  # paced reads wait for at least this many frames (about 5 ms) to avoid tiny blocks


class Pacer:
    """Counts the frames due by the wall clock since `start`: real-time pacing for silence and --no-playback."""

    def __init__(self, sample_rate, start=None):
        self.rate = sample_rate
        self.start = time.monotonic() if start is None else start
        self.done = 0

    @property
    def arrival(self):
        """time.monotonic() at which the last frame taken is due."""
        return self.start + self.done / self.rate

    def take(self, frames, timeout, wake):
        """How many of `frames` are due now, waiting up to `timeout` (or until `wake` is set) for a few."""
        due = int((time.monotonic() - self.start) * self.rate) - self.done
        want = min(frames, MIN_PACED)
        if due < want and timeout > 0:
            wake.wait(min(timeout, (want - due) / self.rate))
            due = int((time.monotonic() - self.start) * self.rate) - self.done
        n = max(0, min(frames, due))
        self.done += n
        return n
