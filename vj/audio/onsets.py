"""Onset strength: spectral flux of a log-magnitude mel spectrum, computed causally block by block.

Frame j covers the samples [(j+1)*hop - n_fft, (j+1)*hop) of the stream (zeros before its start)
and is complete once those samples have arrived; its value is the mean over mel bands of the rise
of log(1 + power / floor) since frame j-1. The beat tracker reads two such signals (`STRENGTH` and
`ACCENT`, below): one that hears every onset, loud or soft, for tempo and phase, and one weighted by
loudness, so a kick or snare outweighs a hi-hat, for the metre (which pulse is the beat). Any split of the stream into
blocks gives the same frames, because the frame grid is fixed from sample 0: the FFT of a frame does not depend on
how many frames share a call (scipy's pocketfft computes each row alike), and the mel sums and the
flux run in one compiled loop in a fixed order.
"""

import math

import numpy as np
import scipy.fft

from vj.audio.kernels import jit_cached

N_MELS = 40
F_MIN = 30.0
F_MAX = 16000.0
# (window seconds, floor power) of the two signals. STRENGTH: a 43 ms window resolves the low notes that
# carry the beat in dense mixes, and a floor at the power of a -120 dBFS sine takes the log of the power
# itself; together they raised the beat's autocorrelation on real music by half, to that of librosa's
# dB-scaled onset strength. ACCENT: a 21 ms window places onsets sharply, and a -70 dBFS floor makes
# rises from quiet levels count little, so quiet hats score well under kicks and snares.
STRENGTH = (0.0427, 1e-12)
ACCENT = (0.0213, 1e-7)
CHUNK_FRAMES = 32


def _mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_filters(sample_rate, n_fft, n_mels=N_MELS, f_min=F_MIN, f_max=F_MAX):
    """Triangular mel filters (n_mels, n_fft // 2 + 1), each normalized to unit area."""
    f_max = min(f_max, sample_rate / 2)
    edges = 700.0 * (10 ** (np.linspace(_mel(f_min), _mel(f_max), n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def fft_size(sample_rate, seconds):
    """The power of two nearest to `seconds` of samples (at least 256)."""
    return 1 << max(8, int(round(np.log2(sample_rate * seconds))))


def mel_extents(weights):
    """(first, end) bin of each mel filter's nonzero span, so the sums skip the zeros."""
    nonzero = weights > 0
    first = np.argmax(nonzero, axis=1)
    end = weights.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return first.astype(np.int64), np.where(nonzero.any(axis=1), end, first).astype(np.int64)


@jit_cached
def _windowed_frames(buffer, window, hop, count):
    """(count, len(window)) frames of `buffer`, `hop` apart, times the window."""
    out = np.empty((count, window.shape[0]), np.float32)
    for j in range(count):
        for i in range(window.shape[0]):
            out[j, i] = buffer[j * hop + i] * window[i]
    return out


@jit_cached
def _flux(spectra, weights, first, end, scale, previous, out):
    """Per frame: the mean over mel bands of the rise of log(1 + mel power * scale); `previous` carries on."""
    n_mels = weights.shape[0]
    for j in range(spectra.shape[0]):
        total = 0.0
        for m in range(n_mels):
            acc = 0.0
            for b in range(first[m], end[m]):
                c = spectra[j, b]
                acc += weights[m, b] * (c.real * c.real + c.imag * c.imag)
            level = math.log1p(acc * scale)
            total += max(level - previous[m], 0.0)
            previous[m] = level
        out[j] = total / n_mels


class OnsetStrength:
    """Streams mono audio into onset-strength frames at `sample_rate / hop` frames per second;
    `signal` = (window seconds, floor power), STRENGTH or ACCENT."""

    def __init__(self, sample_rate, hop, signal=STRENGTH):
        self.sample_rate = int(sample_rate)
        self.hop = int(hop)
        seconds, floor = signal
        self.n_fft = max(fft_size(self.sample_rate, seconds), self.hop)
        self._scale = 4.0 / self.n_fft**2 / floor
        self.frame_rate = self.sample_rate / self.hop
        # time of a frame's onset relative to its end: the centre of its window
        self.delay = self.n_fft / 2 / self.sample_rate
        self._window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)
        self._mel = mel_filters(self.sample_rate, self.n_fft)
        self._first, self._end = mel_extents(self._mel)
        self._buffer = np.zeros(self.n_fft - self.hop, np.float32)
        self._previous = np.zeros(self._mel.shape[0])
        self.frames = 0

    def process(self, block):
        """Onset strength of every frame completed by `block` (possibly none)."""
        buffer = np.concatenate((self._buffer, np.asarray(block, np.float32)))
        count = (len(buffer) - (self.n_fft - self.hop)) // self.hop
        if count <= 0:
            self._buffer = buffer
            return np.zeros(0)
        out = np.empty(count)
        for start in range(0, count, CHUNK_FRAMES):  # chunks that stay in the cache from window to flux
            n = min(CHUNK_FRAMES, count - start)
            frames = _windowed_frames(buffer[start * self.hop :], self._window, self.hop, n)
            _flux(
                scipy.fft.rfft(frames, axis=1),
                self._mel,
                self._first,
                self._end,
                self._scale,
                self._previous,
                out[start : start + n],
            )
        self._buffer = buffer[count * self.hop :]
        self.frames += count
        return out
