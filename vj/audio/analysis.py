"""Causal per-frame values of the audio variables, identical for files and live input."""

import numpy as np

from vj.audio.beats import BeatSettings, BeatTracker
from vj.audio.envelope import EnvelopeBank
from vj.audio.filters import FilterBank
from vj.audio.hits import HitDetector
from vj.config.musical import MUSICAL_VARIABLES, hit_name

READ_CHUNK = 1 << 16


class AudioAnalyzer:
    """Feeds a source through the filter bank, envelopes, onset detectors and beat tracker.

    Every variable is computed per control tick (about 1 ms). The value at time t is the one of the
    last tick completed by the samples before round(t * sample_rate): causal, and the same whatever
    blocks the audio arrives in. After the source ends it reads silence, so values decay to 0.
    `advance_to(t)` serves a live show frame by frame; `values_at(times)` computes a whole file in
    large blocks and gives exactly the same values.
    """

    def __init__(self, source, bands, beats=BeatSettings()):
        self.source = source
        self.bank = FilterBank(bands, source.sample_rate)
        rate = self.bank.control_rate
        self.envelopes = EnvelopeBank(self.bank.bands, rate)
        self.hits = [(i, HitDetector(b, rate)) for i, b in enumerate(self.bank.bands) if b.hit]
        self.beats = BeatTracker(source.sample_rate, self.bank.hop, beats)
        self.names = (
            [b.variable_name for b in self.bank.bands]
            + [hit_name(self.bank.bands[i].variable_name) for i, _ in self.hits]
            + list(MUSICAL_VARIABLES)
        )
        self.values = np.zeros(len(self.names))
        self.position = 0
        self.ended = False

    @classmethod
    def for_preset(cls, source, preset):
        """The analyzer of a preset's filters and beat options."""
        return cls(source, preset.input_audio_filters, BeatSettings(**preset.area("beats")))

    @property
    def sample_rate(self):
        return self.source.sample_rate

    @property
    def hop(self):
        return self.bank.hop

    def feed(self, block):
        """Analyse one block of mono samples; returns (n_variables, n_ticks) values for its control ticks."""
        detectors = self.bank.process(block)
        out = np.empty((len(self.names), detectors.shape[1]))
        bands = len(self.bank.bands)
        out[:bands] = self.envelopes.process(detectors)
        for row, (i, detector) in enumerate(self.hits, start=bands):
            out[row] = detector.process(detectors[i])
        out[-len(MUSICAL_VARIABLES) :] = self.beats.process(block)
        if out.shape[1]:
            self.values = out[:, -1].copy()
        self.position += len(block)
        return out

    def take_beats(self, old):
        """Go on with `old`'s beat tracker (a reload changed only the filters: a locked tempo stays). This fresh
        analyzer first analyses as much silence as `old` is into its control tick, so that its ticks and the
        tracker's fall together; False (nothing taken) when their hops differ."""
        if old.hop != self.hop:
            return False
        into = old.position % old.hop
        if into:
            self.feed(np.zeros(into, np.float32))
        self.beats = old.beats
        return True

    def _read(self, count):
        block = np.zeros(count, np.float32) if self.ended else self.source.read(count)
        if len(block) == 0:
            self.ended = True
        return block

    def advance_to(self, t):
        """Consume audio up to time t (seconds from the source's start); return {name: value}."""
        target = int(round(t * self.sample_rate))
        while self.position < target:
            block = self._read(min(target - self.position, READ_CHUNK))
            if len(block):
                self.feed(block)
        return dict(zip(self.names, self.values.tolist()))

    def values_at(self, times):
        """(n_variables, len(times)) values at ascending times, as `advance_to` gives them one by one."""
        targets = np.array([int(round(t * self.sample_rate)) for t in times], dtype=np.int64)
        if np.any(np.diff(targets) < 0):
            raise ValueError("values_at needs ascending times")
        ticks = targets // self.hop - 1  # the last tick completed before each target sample
        out = np.empty((len(self.names), len(targets)))
        done = 0
        while done < len(targets):
            if targets[done] <= self.position:  # nothing new to read: the current values, as advance_to
                out[:, done] = self.values
                done += 1
                continue
            block = self._read(READ_CHUNK)
            if not len(block):
                continue
            start = self.position // self.hop
            previous = self.values
            table = self.feed(block)
            table = np.concatenate((previous[:, None], table), axis=1)  # column 0: tick start - 1
            upto = int(np.searchsorted(targets, self.position, side="right"))
            out[:, done:upto] = table[:, ticks[done:upto] - start + 1]
            done = upto
        return out
