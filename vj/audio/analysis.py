"""Causal per-frame values of the audio variables, identical for files and live input."""

import numpy as np

from vj.audio.envelope import BandEnvelope
from vj.audio.filters import FilterBank

READ_CHUNK = 1 << 16


class AudioAnalyzer:
    """Feeds a source through the filter bank and envelopes; `advance_to(t)` gives values at time t.

    The value at time t uses only samples before round(t * sample_rate), reduced at the control
    rate (about 1 kHz). After the source ends it reads silence, so values decay to 0.
    """

    def __init__(self, source, bands):
        self.source = source
        self.bank = FilterBank(bands, source.sample_rate)
        self.envelopes = [BandEnvelope(b, self.bank.control_rate) for b in self.bank.bands]
        self.names = [b.variable_name for b in self.bank.bands]
        self.values = np.zeros(len(self.names))
        self.position = 0
        self.ended = False

    @property
    def sample_rate(self):
        return self.source.sample_rate

    def feed(self, block):
        """Analyse one block of mono samples; returns (n_bands, n_ticks) values for its control ticks."""
        detectors = self.bank.process(block)
        out = np.empty_like(detectors)
        for i, envelope in enumerate(self.envelopes):
            out[i] = envelope.process(detectors[i])
        if out.shape[1]:
            self.values = out[:, -1].copy()
        self.position += len(block)
        return out

    def advance_to(self, t):
        """Consume audio up to time t (seconds from the source's start); return {name: value}."""
        target = int(round(t * self.sample_rate))
        while self.position < target:
            want = min(target - self.position, READ_CHUNK)
            block = np.zeros(want, np.float32) if self.ended else self.source.read(want)
            if len(block) == 0:
                self.ended = True
                continue
            self.feed(block)
        return dict(zip(self.names, self.values.tolist()))
