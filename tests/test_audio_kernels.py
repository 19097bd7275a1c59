"""The compiled filter bank and envelopes (vj.audio.kernels) against scipy/numpy references."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from vj.audio import Band, FilterBank, kernels
from vj.audio.envelope import RMS_WINDOW, EnvelopeBank
from vj.audio.filters import LOWPASS_ORDER, control_hop, decimation_for

# Every decimation level 0..4, orders 1..10 (cascades of 1..10 sections, so one or two compiled passes),
# both detectors.
BANDS = [
    Band("sub", 50, 40, order=2, envelope="rms"),
    Band("lo", 105, 65, order=10),
    Band("low_mid", 300, 200, order=7),
    Band("mid", 1000, 800, order=3, envelope="rms"),
    Band("hi_mid", 1800, 1000, order=1),
    Band("air", 9000, 6000, order=6),
    Band("top", 15000, 4000),
]


def reference_detectors(bands, sr, x):
    """README steps 1-2 with scipy on the whole signal: the decimation pyramid (each level the previous one
    lowpassed with sosfilt, every second sample kept), each band's sosfilt at its level, then per control
    tick max |y| or the mean of y^2 summed in time order."""
    hop = control_hop(sr)
    levels = [int(math.log2(decimation_for(b, sr))) for b in bands]
    pyramid = [np.asarray(x, np.float64)]
    for k in range(max(levels)):
        lowpass = signal.butter(LOWPASS_ORDER, sr / 2 ** (k + 2), "lowpass", fs=sr / 2**k, output="sos")
        pyramid.append(signal.sosfilt(lowpass, pyramid[k])[::2])
    n_ticks = len(x) // hop
    out = np.empty((len(bands), n_ticks))
    for i, (band, k) in enumerate(zip(bands, levels)):
        sos = signal.butter(band.order, [band.low, band.high], "bandpass", fs=sr / 2**k, output="sos")
        ticks = signal.sosfilt(sos, pyramid[k])[: n_ticks * (hop >> k)].reshape(n_ticks, hop >> k)
        out[i] = (
            np.cumsum(ticks**2, axis=1)[:, -1] / (hop >> k) if band.envelope == "rms" else np.abs(ticks).max(axis=1)
        )
    return out


def reference_envelope(band, rate, x):
    """README steps 2-4 for one band on the whole detector row, as numpy/scipy expressions: lfilter one-poles
    and the hold-and-release recursion evaluated in the log domain (a running maximum)."""

    def one_pole(seconds, v):
        p = math.exp(-1.0 / (seconds * rate))
        return signal.lfilter([1.0 - p], [1.0, -p], v)

    def decaying_max(seconds, v):
        ramp = np.arange(len(v)) * (-1.0 / (seconds * rate))
        with np.errstate(divide="ignore"):
            return np.exp(np.maximum.accumulate(np.log(v) - ramp) + ramp)

    if band.envelope == "rms":
        x = np.sqrt(2 * np.maximum(one_pole(RMS_WINDOW, x), 0.0))  # a sine reads its amplitude
    level = decaying_max(band.release_seconds, x)
    if band.attack > 0:
        level = one_pole(band.attack, level)
    if band.normalize == "auto":
        return np.clip(band.gain * level / np.maximum(decaying_max(band.agc_time, level), band.floor), 0.0, 1.0)
    if band.normalize == "fixed":
        return np.clip(band.gain * level, 0.0, 1.0)
    return band.gain * level


def noise(n, seed=0):
    return (np.random.default_rng(seed).standard_normal(n) * 0.3).astype(np.float32)


@pytest.mark.parametrize("sr, bands", [(48000, BANDS), (44100, BANDS), (22050, BANDS[:-2])])
def test_bank_is_bit_identical_to_scipy(sr, bands):
    # The kernels do sosfilt's float64 operations in sosfilt's order (no fused multiply-add), so every value
    # is the same double, not merely close; any reordering or loss of state would show here.
    assert set(FilterBank(BANDS, 48000).levels) == {0, 1, 2, 3, 4}
    x = noise(sr // 2)
    bank = FilterBank(bands, sr)
    got = np.concatenate([bank.process(x[:5000]), bank.process(x[5000:])], axis=1)
    np.testing.assert_array_equal(got, reference_detectors(bands, sr, x))


def test_band_signal_is_bit_identical_to_sosfilt():
    # one pass of the kernel, writing every output sample: sosfilt's own float64 output
    sos = signal.butter(5, [6000, 12000], "bandpass", fs=48000, output="sos")
    x = noise(4800).astype(np.float64)
    y, state = np.empty_like(x), np.zeros((5, 2))
    kernels.cascade(5)(x, np.ascontiguousarray(sos[:, [0, 1, 2, 4, 5]]), state, kernels.PASS, 48, y)
    reference, zf = signal.sosfilt(sos, x, zi=np.zeros((5, 2)))
    np.testing.assert_array_equal(y, reference)
    np.testing.assert_array_equal(state, zf)


ENVELOPE_CASES = [
    Band(
        f"v{i}",
        100,
        50,
        envelope=envelope,
        normalize=normalize,
        attack=attack,
        gain=gain,
        release=0.08,
        agc_time=2.0,
        floor=0.05,
    )
    for i, (envelope, normalize, attack, gain) in enumerate(
        [
            ("peak", "auto", 0.005, 1.0),
            ("rms", "auto", 0.0, 2.0),
            ("peak", "fixed", 0.0, 3.0),
            ("rms", "fixed", 0.01, 1.0),
            ("peak", "none", 0.005, 4.0),
            ("rms", "none", 0.0, 0.5),
        ]
    )
]


def test_envelopes_follow_the_reference_equations():
    rate = 1000.0
    rng = np.random.default_rng(5)
    detectors = np.abs(rng.standard_normal((len(ENVELOPE_CASES), 3000))) * np.linspace(0.01, 1.0, 3000)
    detectors[:, 1000:1500] = 0.0  # silence: the level falls, the auto gain's tracker too
    bank = EnvelopeBank(ENVELOPE_CASES, rate)
    got = np.concatenate([bank.process(detectors[:, :1234]), bank.process(detectors[:, 1234:])], axis=1)
    for i, band in enumerate(ENVELOPE_CASES):
        # The reference's log-domain running maximum is exact up to exp/log rounding of values up to
        # |ramp| = 3000 / (0.08 s * 1000/s) = 37.5, i.e. a relative error of ~40 * 2^-52 ~ 1e-14.
        np.testing.assert_allclose(got[i], reference_envelope(band, rate, detectors[i]), rtol=1e-12, atol=1e-300)
        single = EnvelopeBank([band], rate)  # a band alone gives the same values as in the bank
        np.testing.assert_array_equal(
            np.concatenate(
                [single.process(detectors[i : i + 1, :1234]), single.process(detectors[i : i + 1, 1234:])], axis=1
            )[0],
            got[i],
        )
    assert np.all(got[:4] >= 0) and np.all(got[:4] <= 1)


def test_silence_gives_exactly_zero():
    bank = FilterBank(BANDS, 48000)
    envelopes = EnvelopeBank(BANDS, bank.control_rate)
    assert not np.any(envelopes.process(bank.process(np.zeros(48000, np.float32))))


def feed(x, sizes):
    """Filter bank + envelopes over x in blocks of the given sizes (cycled)."""
    bank = FilterBank(BANDS, 48000)
    envelopes = EnvelopeBank(BANDS, bank.control_rate)
    out, pos, i = [], 0, 0
    while pos < len(x):
        out.append(envelopes.process(bank.process(x[pos : pos + sizes[i % len(sizes)]])))
        pos, i = pos + sizes[i % len(sizes)], i + 1
    return np.concatenate(out, axis=1)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_any_block_split_gives_bit_identical_values(sizes, seed):
    x = noise(12000, seed)
    whole = feed(x, [len(x)])
    assert whole.shape == (len(BANDS), len(x) // control_hop(48000))
    np.testing.assert_array_equal(feed(x, sizes), whole)


KERNEL_CALL = (
    "import numpy as np, kernels; out = np.empty(3); "
    "kernels.decaying_max(np.array([1.0, 0.0, 0.0]), 0.5, 0.0, out); print(out.tolist())"
)


def run_kernels_copy(tmp_path, **env):
    """Import a copy of kernels.py in a fresh interpreter with the given environment; return its output."""
    shutil.copy(Path(kernels.__file__), tmp_path / "kernels.py")
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environ.update(PYTHONPATH=str(tmp_path), PYTHONDONTWRITEBYTECODE="1", **env)
    done = subprocess.run(
        [sys.executable, "-c", KERNEL_CALL], env=environ, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_no_writable_cache_folder_compiles_without_cache(tmp_path):
    # A file named __pycache__ beside the module and a cache home under a file: numba has nowhere to write,
    # which a plain njit(cache=True) turns into an error at import.
    (tmp_path / "__pycache__").write_text("")
    (tmp_path / "blocker").write_text("")
    assert (
        run_kernels_copy(tmp_path, XDG_CACHE_HOME=str(tmp_path / "blocker" / "cache"), HOME=str(tmp_path / "blocker"))
        == "[1.0, 0.5, 0.25]"
    )


def test_numba_cache_dir_is_honoured(tmp_path):
    cache = tmp_path / "numba-cache"
    assert run_kernels_copy(tmp_path, NUMBA_CACHE_DIR=str(cache)) == "[1.0, 0.5, 0.25]"
    assert list(cache.rglob("kernels.decaying_max-*.nbi"))
    assert not (tmp_path / "__pycache__").exists()
