"""A bank of Butterworth bandpass filters (pytti's band edges and order) with carried state.

Each band is `scipy.signal.butter(order, [f_center - f_width/2, f_center + f_width/2], 'bandpass',
output='sos')` designed for the rate it runs at. Bands far below Nyquist run on a decimated copy
of the input (rate sr/D, D = 1..16, chosen so the upper edge has >= 8 samples per period); the
decimation pyramid uses order-6 Butterworth lowpasses (< 0.01 dB in any band, >= 60 dB alias
rejection). That is what makes 8 bands cost little, and it also keeps narrow low bands numerically
well conditioned. The sections run in float64 in compiled loops (vj.audio.kernels) that reduce each
band to its detector without storing the band signal. Input is consumed in whole control ticks and
all state is carried, so any block split gives bit-identical output.
"""

import numpy as np
from scipy import signal

from vj.audio import kernels
from vj.config.bands import check_band

MAX_DECIMATION = 16
SAMPLES_PER_PERIOD = 8
LOWPASS_ORDER = 6


def control_hop(sample_rate):
    """Samples per control tick: a multiple of MAX_DECIMATION near 1 ms."""
    return MAX_DECIMATION * max(1, round(sample_rate / (1000 * MAX_DECIMATION)))


def decimation_for(band, sample_rate):
    """The largest power-of-two D <= MAX_DECIMATION at which the band keeps >= 8 samples per period."""
    d = 1
    while d < MAX_DECIMATION and band.high * SAMPLES_PER_PERIOD <= sample_rate / (2 * d):
        d *= 2
    return d


class Cascade:
    """Second-order sections (scipy's sos layout) with their state, run as compiled passes of at most
    kernels.MAX_SECTIONS sections each."""

    def __init__(self, sos):
        sos = np.asarray(sos, np.float64)
        n_passes = -(-len(sos) // kernels.MAX_SECTIONS)
        # rows (b0, b1, b2, a1, a2): butter's sections have a0 = 1
        self._passes = [
            (kernels.cascade(len(part)), np.ascontiguousarray(part[:, [0, 1, 2, 4, 5]]), np.zeros((len(part), 2)))
            for part in np.array_split(sos, n_passes)
        ]

    def run(self, x, mode, hop, out):
        """Filter x (float64, a whole number of hops) and write `out` as kernels' `mode` says."""
        for kernel, coef, state in self._passes[:-1]:
            y = np.empty_like(x)
            kernel(x, coef, state, kernels.PASS, hop, y)
            x = y
        kernel, coef, state = self._passes[-1]
        kernel(x, coef, state, mode, hop, out)


class FilterBank:
    """Filters blocks of mono audio; returns each band's detector value per control tick.

    The detector is max |y| over the tick (envelope 'peak') or mean y^2 (envelope 'rms'). Samples of
    an unfinished tick wait for the next block.
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
        self._lowpass = [
            Cascade(
                signal.butter(
                    LOWPASS_ORDER, self.sample_rate / 2 ** (k + 2), "lowpass", fs=self.sample_rate / 2**k, output="sos"
                )
            )
            for k in range(depth)
        ]
        self._cascades = [
            Cascade(signal.butter(b.order, [b.low, b.high], "bandpass", fs=self.sample_rate / 2**k, output="sos"))
            for b, k in zip(self.bands, self.levels)
        ]
        self._modes = [kernels.POWER if b.envelope == "rms" else kernels.PEAK for b in self.bands]
        self._pending = np.zeros(0, np.float32)

    def process(self, block):
        """Filter one block; return an array (n_bands, n_new_ticks) of detector values."""
        x = np.concatenate((self._pending, np.asarray(block, dtype=np.float32)))
        n_ticks = len(x) // self.hop
        self._pending = x[n_ticks * self.hop :].copy()
        out = np.empty((len(self.bands), n_ticks))
        if n_ticks == 0:
            return out
        # Each level's buffer starts at a tick boundary: an even index at every level that is decimated.
        levels = [x[: n_ticks * self.hop].astype(np.float64)]
        for k, lowpass in enumerate(self._lowpass):
            decimated = np.empty(len(levels[k]) // 2)
            lowpass.run(levels[k], kernels.DECIMATE, self.hop >> k, decimated)
            levels.append(decimated)
        for i, (cascade, level, mode) in enumerate(zip(self._cascades, self.levels, self._modes)):
            cascade.run(levels[level], mode, self.hop >> level, out[i])
        return out
