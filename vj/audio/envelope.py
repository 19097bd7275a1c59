"""Envelope followers and automatic gain at the control rate, vectorized, with carried state."""

import math

import numpy as np
from scipy import signal

_CHUNK = 1 << 15  # keeps the log-domain offsets small for long blocks


def decaying_max(x, time_constant, rate, state):
    """e[n] = max(x[n], p * e[n-1]) with p = exp(-1 / (time_constant * rate)); returns (e, e[-1]).

    Computed without a Python loop: in the log domain the recursion is a running maximum.
    """
    if len(x) == 0:
        return np.zeros(0), state
    log_p = -1.0 / (time_constant * rate)
    out = np.empty(len(x))
    for start in range(0, len(x), _CHUNK):
        part = x[start:start + _CHUNK]
        ramp = np.arange(len(part)) * log_p
        with np.errstate(divide="ignore"):
            running = np.maximum.accumulate(np.log(part) - ramp) + ramp
            carried = (math.log(state) if state > 0 else -math.inf) + ramp + log_p
        out[start:start + len(part)] = np.exp(np.maximum(running, carried))
        state = float(out[start + len(part) - 1])
    return out, state


RMS_WINDOW = 0.02  # seconds of power averaging in 'rms' mode


def _one_pole(time_constant, rate):
    """(b, a) of a unity-gain one-pole lowpass with the given time constant."""
    p = math.exp(-1.0 / (time_constant * rate))
    return [1.0 - p], [1.0, -p]


class BandEnvelope:
    """Detector values of one band -> its variable, at the control rate.

    'peak' starts from max |y| per tick; 'rms' from sqrt of the power averaged over RMS_WINDOW.
    The level then holds peaks and falls with time constant `release`, and rises through a
    one-pole smoother with time constant `attack`. Normalization: 'auto' divides by a causal peak
    tracker that falls with time constant `agc_time` and never goes below `floor`; 'fixed' uses
    the level as it is (1.0 = full-scale sine peak in 'peak' mode); 'none' is 'fixed' unclipped.
    The result is multiplied by `gain`; 'auto' and 'fixed' clip it to 0..1.
    """

    def __init__(self, band, control_rate):
        self.band = band
        self.rate = control_rate
        self._rms = _one_pole(RMS_WINDOW, control_rate)
        self._rms_zi = np.zeros(1)
        self._attack = _one_pole(band.attack, control_rate) if band.attack > 0 else None
        self._attack_zi = np.zeros(1)
        self._held = 0.0
        self._peak = 0.0

    def process(self, detector):
        band = self.band
        x = detector
        if len(x) == 0:  # lfilter would not hand back its state unchanged for an empty input
            return x
        if band.envelope == "rms":
            x, self._rms_zi = signal.lfilter(*self._rms, x, zi=self._rms_zi)
            x = np.sqrt(np.maximum(x, 0.0))
        level, self._held = decaying_max(x, band.release, self.rate, self._held)
        if self._attack is not None:
            level, self._attack_zi = signal.lfilter(*self._attack, level, zi=self._attack_zi)
        if band.normalize == "auto":
            peak, self._peak = decaying_max(level, band.agc_time, self.rate, self._peak)
            return np.clip(band.gain * level / np.maximum(peak, band.floor), 0.0, 1.0)
        if band.normalize == "fixed":
            return np.clip(band.gain * level, 0.0, 1.0)
        return band.gain * level
