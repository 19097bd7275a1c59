"""A lock-free ring of audio frames between a PortAudio callback and its reader, so the callback only ever copies
and never waits for the reader (a dead or slow reader costs dropped frames, never a blocked sound card)."""

import numpy as np


class Ring:
    """A lock-free single-producer/single-consumer ring of (frames, channels) float32 audio.

    The producer (an audio callback) only copies and advances `written`; the consumer only copies and advances
    `taken`; frames that do not fit are counted in `dropped`, never waited for.
    """

    def __init__(self, frames, channels):
        self.buffer = np.zeros((int(frames), int(channels)), np.float32)
        self.written = 0
        self.taken = 0
        self.dropped = 0

    @property
    def channels(self):
        return self.buffer.shape[1]

    @property
    def available(self):
        return self.written - self.taken

    @property
    def free(self):
        return len(self.buffer) - self.available

    def write(self, block):
        """Producer: store as much of `block` (frames, channels) as fits."""
        size = len(self.buffer)
        n = min(len(block), size - (self.written - self.taken))
        self.dropped += len(block) - n
        start = self.written % size
        first = min(n, size - start)
        self.buffer[start : start + first] = block[:first]
        self.buffer[: n - first] = block[first:n]
        self.written += n  # published after the copy, so the consumer never sees unwritten frames

    def read_into(self, out):
        """Consumer: copy up to len(out) frames into `out`; return how many."""
        size = len(self.buffer)
        n = min(len(out), self.written - self.taken)
        start = self.taken % size
        first = min(n, size - start)
        out[:first] = self.buffer[start : start + first]
        out[first:n] = self.buffer[: n - first]
        self.taken += n
        return n
