"""Envelope followers and automatic gain at the control rate (README "Audio variables", steps 2-4).

The equations run in one compiled loop over all bands and ticks (vj.audio.kernels.envelopes), with
their state carried across blocks.
"""

import math

import numpy as np

from vj.audio import kernels

RMS_WINDOW = 0.02  # seconds of power averaging in 'rms' mode

_NORMALIZE = {"auto": kernels.AUTO, "fixed": kernels.FIXED, "none": kernels.NONE}


def pole(time_constant, rate):
    """p = exp(-1 / (time_constant * rate)): the per-tick decay of that time constant; 0 (no memory) for 0."""
    return math.exp(-1.0 / (time_constant * rate)) if time_constant > 0 else 0.0


def decaying_max(x, time_constant, rate, state):
    """e[n] = max(x[n], p * e[n-1]) with p = exp(-1 / (time_constant * rate)) and e[-1] = state; returns
    (e, e[-1]). The hold-and-release recursion of step 3 on its own, as the envelopes run it."""
    out = np.empty(len(x))
    last = kernels.decaying_max(np.ascontiguousarray(x, np.float64), pole(time_constant, rate), float(state), out)
    return out, last


class EnvelopeBank:
    """Detector values of a bank's bands (n_bands, n_ticks) -> their variables, at the control rate.

    'peak' starts from max |y| per tick; 'rms' from sqrt(2 x the power averaged over RMS_WINDOW), so a sine
    reads its amplitude in both.
    The level then holds peaks and falls with time constant `release`, and rises through a
    one-pole smoother with time constant `attack`. Normalization: 'auto' divides by a causal peak
    tracker that falls with time constant `agc_time` and never goes below `floor`; 'fixed' uses
    the level as it is (1.0 = a full-scale sine); 'none' is 'fixed' unclipped.
    The result is multiplied by `gain`; 'auto' and 'fixed' clip it to 0..1.
    """

    def __init__(self, bands, control_rate):
        self.bands = tuple(bands)
        self.rate = control_rate
        self._rms = np.array([b.envelope == "rms" for b in self.bands], bool)
        self._normalize = np.array([_NORMALIZE[b.normalize] for b in self.bands], np.int64)
        self._params = np.array(
            [
                [
                    pole(RMS_WINDOW, control_rate),
                    pole(b.release_seconds, control_rate),
                    pole(b.attack, control_rate),
                    pole(b.agc_time, control_rate),
                    b.floor,
                    b.gain,
                ]
                for b in self.bands
            ],
            np.float64,
        ).reshape(len(self.bands), 6)
        self._state = np.zeros((len(self.bands), 4))  # per band: power, held, level, peak

    def process(self, detectors):
        """Return the variables (n_bands, n_ticks) for the next ticks' detector values."""
        detectors = np.ascontiguousarray(detectors, np.float64)
        out = np.empty_like(detectors)
        kernels.envelopes(detectors, self._rms, self._normalize, self._params, self._state, out)
        return out
