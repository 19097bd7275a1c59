"""A bank of Butterworth bandpass filters (pytti's band edges and order) with carried state.

Each band is `scipy.signal.butter(order, [f_center - f_width/2, f_center + f_width/2], 'bandpass',
output='sos')` designed for the rate it runs at. Bands far below Nyquist run on a decimated copy
of the input (rate sr/D, D = 1..16, chosen so the upper edge has >= 8 samples per period); the
decimation pyramid uses order-6 Butterworth lowpasses (< 0.01 dB in any band, >= 60 dB alias
rejection). That is what makes 8 bands cost little, and it also keeps narrow low bands numerically
well conditioned. All state is carried across blocks, so any block split gives the same output.
"""

import numpy as np
from scipy import signal

from vj.audio.bands import check_band

MAX_DECIMATION = 16
SAMPLES_PER_PERIOD = 8


def control_hop(sample_rate):
    """Samples per control tick: a multiple of MAX_DECIMATION near 1 ms."""
    return MAX_DECIMATION * max(1, round(sample_rate / (1000 * MAX_DECIMATION)))


def decimation_for(band, sample_rate):
    """The largest power-of-two D <= MAX_DECIMATION at which the band keeps >= 8 samples per period."""
    d = 1
    while d < MAX_DECIMATION and band.high * SAMPLES_PER_PERIOD <= sample_rate / (2 * d):
        d *= 2
    return d


class FilterBank:
    """Filters blocks of mono audio; returns each band's detector value per control tick.

    The detector is max |y| over the tick (envelope 'peak') or mean y^2 (envelope 'rms').
    """

    def __init__(self, bands, sample_rate):
        self.bands = tuple(bands)
        self.sample_rate = int(sample_rate)
        for band in self.bands:
            check_band(band, self.sample_rate)
        self.hop = control_hop(self.sample_rate)
        self.control_rate = self.sample_rate / self.hop
        self.levels = [int(np.log2(decimation_for(b, self.sample_rate))) for b in self.bands]
        depth = max(self.levels, default=0)
        # Pyramid stage k takes level k (rate sr/2^k) to level k+1; cutoff at the new Nyquist (sr/2^(k+2)).
        self._lowpass = [signal.butter(6, self.sample_rate / 2 ** (k + 2), "lowpass", fs=self.sample_rate / 2 ** k,
                                       output="sos").astype(np.float32) for k in range(depth)]
        self._lowpass_zi = [np.zeros((s.shape[0], 2), np.float32) for s in self._lowpass]
        self._level_count = [0] * depth
        self._sos = [signal.butter(b.order, [b.low, b.high], "bandpass", fs=self.sample_rate / 2 ** k,
                                   output="sos").astype(np.float32) for b, k in zip(self.bands, self.levels)]
        self._zi = [np.zeros((s.shape[0], 2), np.float32) for s in self._sos]
        self._pending = [np.zeros(0, np.float32) for _ in self.bands]
        self._samples = 0
        self._ticks = 0

    @staticmethod
    def _filter(sos, x, states, i):
        """sosfilt with the state kept in states[i]."""
        if len(x) == 0:
            return x
        y, states[i] = signal.sosfilt(sos, x, zi=states[i])
        return y

    def process(self, block):
        """Filter one block; return an array (n_bands, n_new_ticks) of detector values."""
        block = np.asarray(block, dtype=np.float32)
        levels = [block]
        for k, sos in enumerate(self._lowpass):
            y = self._filter(sos, levels[-1], self._lowpass_zi, k)
            levels.append(y[self._level_count[k] % 2::2])  # keep the samples at even global indices
            self._level_count[k] += len(y)
        self._samples += len(block)
        new_ticks = self._samples // self.hop - self._ticks
        self._ticks += new_ticks
        out = np.empty((len(self.bands), new_ticks))
        for i, (band, level) in enumerate(zip(self.bands, self.levels)):
            y = self._filter(self._sos[i], levels[level], self._zi, i)
            pending = np.concatenate((self._pending[i], y)) if len(self._pending[i]) else y
            hop = self.hop >> level
            ticks = pending[:new_ticks * hop].reshape(new_ticks, hop)
            if band.envelope == "rms":
                out[i] = np.square(ticks, dtype=np.float64).mean(axis=1)
            else:
                out[i] = np.abs(ticks).max(axis=1, initial=0.0)
            self._pending[i] = pending[new_ticks * hop:]
        return out
