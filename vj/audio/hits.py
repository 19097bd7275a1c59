"""Per-band onset detection (`NAME_hit`): 1 at each detected onset of a band, decaying with `hit_decay`.

At the control rate (about 1 kHz), for a band's detector value x (peak |y| of the tick, or the square
root of its mean power for `rms` bands):
- fast level f: holds peaks, falls with time constant max(FAST_RELEASE, FAST_PERIODS / f_center);
- rise d = 20 log10(f) minus a reference that follows 20 log10(f) through a one-pole of REFERENCE_TIME
  (as of the previous tick), i.e. how many dB the band jumped above its recent level;
- an onset fires when d reaches the threshold while armed, f is at most the gate below the band's
  recent peak (a level that falls with time constant PEAK_TIME) and above ABSOLUTE_FLOOR, and at least
  MIN_INTERVAL has passed since the last onset; it re-arms once d falls below half the threshold.
  `hit_sensitivity` s sets the threshold (15 - 12 s dB) and the gate (10 + 20 s dB): 9 dB and 20 dB
  at the default 0.5;
- the variable is exp(-(time since the onset) / hit_decay), 0 before the first onset.
The loop is compiled (numba) and carries its state, so any block split gives identical values.
"""

import math

import numpy as np
from vj.audio.kernels import jit_cached

FAST_RELEASE = 0.01
FAST_PERIODS = 1.5  # ... or this many periods of the band's centre, so a low band's ripple is no onset
REFERENCE_TIME = 0.03
PEAK_TIME = 5.0
ABSOLUTE_FLOOR = 1e-4  # -80 dBFS
MIN_INTERVAL = 0.05


def threshold_db(sensitivity):
    """Rise in dB that counts as an onset: 15 dB at sensitivity 0, 3 dB at 1."""
    return 15.0 - 12.0 * sensitivity


def gate_db(sensitivity):
    """How far below the band's recent peak an onset may be: 10 dB at sensitivity 0, 30 dB at 1."""
    return 10.0 + 20.0 * sensitivity


@jit_cached
def _hits(x, out, state, p_fast, p_reference, p_peak, threshold, gate, floor, min_ticks, p_decay):
    # state: fast level, reference dB, armed (1/0), recent peak, ticks since onset (-1: none yet)
    fast, reference, armed, peak, since = state[0], state[1], state[2], state[3], state[4]
    for n in range(x.shape[0]):
        fast = max(x[n], fast * p_fast)
        peak = max(fast, peak * p_peak)
        level = 20.0 * math.log10(max(fast, 1e-10))
        rise = level - reference
        reference += (1.0 - p_reference) * (level - reference)
        if since >= 0:
            since += 1
        if rise < 0.5 * threshold:
            armed = 1.0
        elif (
            armed > 0
            and rise >= threshold
            and fast >= floor
            and fast >= gate * peak
            and (since < 0 or since >= min_ticks)
        ):
            since = 0
            armed = 0.0
        out[n] = 0.0 if since < 0 else p_decay**since
    state[0], state[1], state[2], state[3], state[4] = fast, reference, armed, peak, since


class HitDetector:
    """Onsets of one band at the control rate; `process(detector_row)` gives the hit values per tick."""

    def __init__(self, band, control_rate):
        self.rms = band.envelope == "rms"
        pole = lambda seconds: math.exp(-1.0 / (seconds * control_rate))  # noqa: E731
        self._args = (
            pole(max(FAST_RELEASE, FAST_PERIODS / band.f_center)),
            pole(REFERENCE_TIME),
            pole(PEAK_TIME),
            threshold_db(band.hit_sensitivity),
            10 ** (-gate_db(band.hit_sensitivity) / 20),
            ABSOLUTE_FLOOR,
            int(math.ceil(MIN_INTERVAL * control_rate)),
            pole(band.hit_decay),
        )
        self._state = np.array([0.0, -200.0, 1.0, 0.0, -1.0])

    def process(self, detector):
        x = np.sqrt(detector) if self.rms else np.asarray(detector, np.float64)
        out = np.empty(len(x))
        _hits(np.ascontiguousarray(x, np.float64), out, self._state, *self._args)
        return out
