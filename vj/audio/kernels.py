"""Compiled (numba) loops of the audio analysis: second-order-section cascades and the envelope stages.

Every loop reads and writes its state in arrays the caller keeps, so splitting the input into blocks
never changes a value. Compiled code is cached on disk (see `jit_cached`), so a start-up loads it
instead of compiling it.
"""

import math
from functools import lru_cache

import numpy as np
from numba import njit
from numba.cpython.unsafe.tuple import tuple_setitem
from numba.np.unsafe.ndarray import to_fixed_tuple

# What a cascade pass writes (`out`): every output sample, those at even indices (the decimation
# pyramid), or per hop of samples the detector max |y| ('peak') or mean y^2 ('rms').
PASS, DECIMATE, PEAK, POWER = 0, 1, 2, 3

# Normalization codes of the envelope kernel: Band.normalize 'auto', 'fixed', 'none'.
AUTO, FIXED, NONE = 0, 1, 2

# Sections per compiled pass. Their state stays in registers only while LLVM unrolls the section loop,
# which it does up to 7 sections (8 ran 15x slower); 5 ran fastest per section. Longer cascades (order
# 6..10) run as several passes.
MAX_SECTIONS = 5


def jit_cached(func):
    """njit, cached on disk: in NUMBA_CACHE_DIR if set, else beside this file, else in the user's cache
    folder (numba's own order); where none is writable, compiled at first call in every process."""
    try:
        return njit(cache=True, nogil=True)(func)
    except RuntimeError:  # numba's "no locator available": no writable cache folder at all
        return njit(nogil=True)(func)


@lru_cache(maxsize=None)
def cascade(n_sections):
    """The compiled pass of `n_sections` (1..MAX_SECTIONS) second-order sections, one per section count."""
    if not 1 <= n_sections <= MAX_SECTIONS:
        raise ValueError(f"a pass has 1..{MAX_SECTIONS} sections, not {n_sections}")

    def run(x, coef, state, mode, hop, out):
        """Filter x (float64, a whole number of hops) through coef rows (b0, b1, b2, a1, a2) in transposed
        direct form II, as scipy's sosfilt, with state (n_sections, 2) carried; write `out` by `mode`."""
        b0, b1, b2 = (
            to_fixed_tuple(coef[:, 0], n_sections),
            to_fixed_tuple(coef[:, 1], n_sections),
            to_fixed_tuple(coef[:, 2], n_sections),
        )
        a1, a2 = to_fixed_tuple(coef[:, 3], n_sections), to_fixed_tuple(coef[:, 4], n_sections)
        z0, z1 = to_fixed_tuple(state[:, 0], n_sections), to_fixed_tuple(state[:, 1], n_sections)
        for t in range(x.shape[0] // hop):
            acc = 0.0
            for i in range(t * hop, (t + 1) * hop):
                y = x[i]
                for s in range(n_sections):
                    u = y
                    y = b0[s] * u + z0[s]
                    # sosfilt's operations in sosfilt's order: the same float64 results, bit for bit
                    z0 = tuple_setitem(z0, s, (b1[s] * u - a1[s] * y) + z1[s])
                    z1 = tuple_setitem(z1, s, b2[s] * u - a2[s] * y)
                if mode == PASS:
                    out[i] = y
                elif mode == DECIMATE:
                    if i % 2 == 0:
                        out[i // 2] = y
                elif mode == PEAK:
                    acc = max(acc, abs(y))
                else:
                    acc += y * y
            if mode == PEAK:
                out[t] = acc
            elif mode == POWER:
                out[t] = acc / hop
        for s in range(n_sections):
            state[s, 0] = z0[s]
            state[s, 1] = z1[s]

    return jit_cached(run)


@jit_cached
def one_pole(x, p, y, out):
    """out[n] = (1 - p) x[n] + p out[n-1], from out[-1] = y (unity-gain lowpass); returns the last value.

    out may be x itself.
    """
    for n in range(x.shape[0]):
        y = (1.0 - p) * x[n] + p * y
        out[n] = y
    return y


@jit_cached
def decaying_max(x, p, e, out):
    """out[n] = max(x[n], p out[n-1]), from out[-1] = e (holds peaks, falls by p per step); returns the last
    value. out may be x itself."""
    for n in range(x.shape[0]):
        e = max(x[n], p * e)
        out[n] = e
    return e


@jit_cached
def envelopes(detectors, rms, normalize, params, state, out):
    """README's steps 2-4 for each band (row) over its ticks: 'rms' smoothing and root, hold and release,
    attack, normalization, gain and clip.

    params rows: (rms pole, release pole, attack pole, agc pole, floor, gain); state rows: (power, held,
    level, peak), updated. out may be detectors itself.
    """
    peak = np.empty(detectors.shape[1])
    for b in range(detectors.shape[0]):
        x, level = detectors[b], out[b]
        if rms[b]:
            state[b, 0] = one_pole(x, params[b, 0], state[b, 0], level)
            for n in range(level.shape[0]):
                level[n] = math.sqrt(2.0 * level[n])  # a mean of squares smoothed with weights >= 0: never < 0
            x = level
        state[b, 1] = decaying_max(x, params[b, 1], state[b, 1], level)
        state[b, 2] = one_pole(level, params[b, 2], state[b, 2], level)
        gain = params[b, 5]
        if normalize[b] == AUTO:
            state[b, 3] = decaying_max(level, params[b, 3], state[b, 3], peak)
            for n in range(level.shape[0]):
                level[n] = min(max(gain * level[n] / max(peak[n], params[b, 4]), 0.0), 1.0)
        elif normalize[b] == FIXED:
            for n in range(level.shape[0]):
                level[n] = min(max(gain * level[n], 0.0), 1.0)
        else:
            for n in range(level.shape[0]):
                level[n] = gain * level[n]
