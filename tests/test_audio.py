import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from conftest import tone
from vj.audio import ArraySource, AudioAnalyzer, AudioError, Band, FileSource, FilterBank
from vj.audio.envelope import decaying_max
from vj.show.variables import FrameVariables

SR = 48000
PYTTI = [Band("fLo", 105, 65), Band("fHi", 900, 600)]
BANK = [
    Band("sub", 50, 40, envelope="rms"),
    Band("fLo", 105, 65),
    Band("mid", 1000, 800, order=3),
    Band("air", 9000, 6000, order=6),
]


def feed_in_blocks(bands, x, sizes):
    analyzer = AudioAnalyzer(ArraySource(x, SR), bands)
    outputs, pos, i = [], 0, 0
    while pos < len(x):
        n = sizes[i % len(sizes)]
        outputs.append(analyzer.feed(x[pos : pos + n]))
        pos, i = pos + n, i + 1
    return np.concatenate(outputs, axis=1)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_block_size_does_not_change_values(sizes, seed):
    x = np.random.default_rng(seed).standard_normal(SR // 2).astype(np.float32) * 0.3
    whole = feed_in_blocks(BANK, x, [len(x)])
    blocks = feed_in_blocks(BANK, x, sizes)
    # every band, then the musical variables (beat tracker)
    assert blocks.shape == whole.shape == (len(BANK) + 5, len(x) // FilterBank(BANK, SR).hop)
    np.testing.assert_allclose(blocks, whole, rtol=1e-9, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(split=st.integers(1, 2000))
def test_full_rate_band_equals_scipy_butter_sosfilt(split):
    band = Band("air", 9000, 6000, order=5, envelope="peak")
    bank = FilterBank([band], SR)
    assert bank.levels == [0]
    x = np.random.default_rng(split).standard_normal(4000).astype(np.float32)
    reference = signal.sosfilt(signal.butter(5, [6000, 12000], "bandpass", fs=SR, output="sos"), x)
    bank.process(x[:split])
    bank.process(x[split:])
    # the bank keeps unreduced samples of the last partial tick; the ticks it made are max |y|
    ticks = np.abs(reference[: len(x) // bank.hop * bank.hop]).reshape(-1, bank.hop).max(axis=1)
    fresh = FilterBank([band], SR)
    np.testing.assert_allclose(fresh.process(x)[0], ticks, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("freq, high, low", [(100, "fLo", "fHi"), (900, "fHi", "fLo")])
def test_tone_in_band_drives_its_variable_only(freq, high, low):
    analyzer = AudioAnalyzer(ArraySource(tone(freq, 2.0), SR), PYTTI)
    values = analyzer.advance_to(1.5)
    assert values[high] > 0.95
    assert values[low] < 0.1


@pytest.mark.parametrize("normalize, expected", [("fixed", 0.5), ("none", 0.5)])
def test_fixed_scale_reads_the_band_amplitude(normalize, expected):
    band = Band("fLo", 105, 65, normalize=normalize)
    value = AudioAnalyzer(ArraySource(tone(100, 1.0, amp=0.5), SR), [band]).advance_to(0.9)["fLo"]
    assert value == pytest.approx(expected, rel=0.05)


def test_silence_gives_zero_not_nan():
    analyzer = AudioAnalyzer(ArraySource(np.zeros(SR, np.float32), SR), PYTTI + [Band("r", 300, 100, envelope="rms")])
    for t in (0.0, 0.1, 0.5, 0.99):
        assert all(v == 0.0 for v in analyzer.advance_to(t).values())


def test_values_are_causal():
    x = np.concatenate([np.zeros(SR, np.float32), tone(100, 1.0)])
    analyzer = AudioAnalyzer(ArraySource(x, SR), PYTTI)
    assert analyzer.advance_to(0.999)["fLo"] == 0.0
    assert analyzer.advance_to(1.1)["fLo"] > 0.9


# pytti's audio defects, one test each (see README "Audio variables").


def test_defect1_low_band_does_not_depend_on_fps():
    # pytti filtered each frame's window from zero state: an 80 Hz tone in a 70-90 Hz order-6 band
    # read 7734 at 12 fps and 15 at 60 fps. Here state carries over, so both rates agree.
    band = [Band("f", 80, 20, order=6, normalize="fixed")]
    x = tone(80, 3.0)
    at = {}
    for fps in (12, 60):
        analyzer = AudioAnalyzer(ArraySource(x, SR), band)
        at[fps] = [analyzer.advance_to(i / fps)["f"] for i in range(3 * fps)]
    assert at[12][-1] == pytest.approx(at[60][-5], rel=1e-6)
    assert at[60][-1] == pytest.approx(0.5, rel=0.05)


def test_defect2_normalization_starts_at_the_offset_and_stays_in_range():
    # loud audio before the offset must not scale what plays after it, and values stay <= 1
    x = np.concatenate([tone(100, 1.0, amp=1.0), tone(100, 1.0, amp=0.05)])
    with_offset = AudioAnalyzer(ArraySource(x, SR, offset=1.0), PYTTI).advance_to(0.9)
    sliced = AudioAnalyzer(ArraySource(x[SR:], SR), PYTTI).advance_to(0.9)
    assert with_offset == sliced and with_offset["fLo"] > 0.95
    analyzer = AudioAnalyzer(ArraySource(np.random.default_rng(1).standard_normal(SR * 2), SR), PYTTI)
    assert all(0.0 <= v <= 1.0 for i in range(40) for v in analyzer.advance_to(i / 20).values())


def test_defect3_prev_is_the_previous_frames_value():
    variables = FrameVariables(["fLo"])
    first = variables.frame(0.0, 0, {"fLo": 0.3})
    second = variables.frame(0.1, 1, {"fLo": 0.7})
    assert (first["fLo_prev"], second["fLo_prev"], second["fLo"]) == (0.0, 0.3, 0.7)


def test_defect4_values_decay_after_the_audio_ends():
    analyzer = AudioAnalyzer(ArraySource(tone(100, 1.0), SR), PYTTI)
    assert analyzer.advance_to(0.9)["fLo"] > 0.9
    assert analyzer.advance_to(3.0)["fLo"] < 1e-3


def test_defect5_variables_exist_before_the_first_frame():
    env = FrameVariables(["fLo", "fHi"]).frame(0.0, 0, {})
    assert env == {"t": 0.0, "frame": 0.0, "fLo": 0.0, "fLo_prev": 0.0, "fHi": 0.0, "fHi_prev": 0.0}


@pytest.mark.parametrize(
    "band, fragment",
    [
        (Band("f", 20, 60), "filter 'f': band -10..50 Hz"),
        (Band("f", 23000, 4000), "24000 Hz"),
        (Band("f", 100, 0), "f_width 0 Hz must be > 0"),
        (Band("f", 100, 50, order=11), "order 11 is outside 1..10"),
    ],
)
def test_defect6_band_edges_are_validated(band, fragment):
    with pytest.raises(AudioError, match=fragment):
        FilterBank([band], SR)


def test_decaying_max_matches_the_recursion():
    x = np.abs(np.random.default_rng(3).standard_normal(500))
    x[100:200] = 0.0
    out, last = decaying_max(x, 0.05, 1000.0, 0.5)
    p, e, expected = np.exp(-1 / 50.0), 0.5, []
    for v in x:
        e = max(v, p * e)
        expected.append(e)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert last == pytest.approx(expected[-1])


def test_file_source_offset_mono_and_formats(write_audio):
    left, right = tone(100, 1.0, amp=0.4), tone(100, 1.0, amp=0.0)
    for name, kw in (("s.flac", {}), ("s.ogg", {"format": "OGG", "subtype": "VORBIS"})):
        path = write_audio(np.stack([left, right], axis=1), name=name, **kw)
        source = FileSource(path, offset=0.5)
        assert source.sample_rate == SR and source.duration == pytest.approx(0.5)
        block = source.read(SR)
        assert block.ndim == 1 and abs(len(block) - SR // 2) < 2000
        assert np.max(np.abs(block)) == pytest.approx(0.2, abs=0.02)


def test_file_source_errors(tmp_path, write_audio):
    with pytest.raises(AudioError, match="not found"):
        FileSource(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"junk")
    with pytest.raises(AudioError, match="cannot be read"):
        FileSource(tmp_path / "junk.wav")
    with pytest.raises(AudioError, match="outside"):
        FileSource(write_audio(tone(100, 1.0)), offset=5.0)


def _dense_hats(seconds=20.0, bpm=130.0):
    """Accented sixteenth-note hats (30 ms noise bursts, gains 0.4-1) over a steady noise wash at about -25 dB."""
    rng = np.random.default_rng(7)
    x = 0.056 * rng.standard_normal(int(seconds * SR))
    burst = np.exp(-np.arange(int(0.1 * SR)) / (0.03 * SR))
    for k, at in enumerate(np.arange(0.0, seconds - 0.2, 60.0 / bpm / 4)):
        start = int(at * SR)
        x[start : start + len(burst)] += (0.4 + 0.6 * rng.random()) * burst * rng.standard_normal(len(burst))
    return (0.4 * x / np.abs(x).max()).astype(np.float32)


def _window_rank_correlation(values, reference, window=150):
    from scipy.stats import spearmanr

    return np.mean(
        [
            spearmanr(values[i : i + window], reference[i : i + window])[0]
            for i in range(0, len(values) - window + 1, window)
        ]
    )


@pytest.mark.parametrize(
    "band, at_least, at_most",
    [
        (Band("hats", 4000, 4000), 0.9, 1.0),  # the defaults: rms, release auto
        (Band("hats", 4000, 4000, envelope="peak", release=0.15), 0.0, 0.8),  # the old defaults blur dense hits
    ],
)
def test_dense_hats_keep_contrast(band, at_least, at_most):
    x = _dense_hats()
    fps = 30
    times = np.arange(1, int(20 * fps)) / fps
    values = AudioAnalyzer(ArraySource(x, SR), [band]).values_at(times)[0]
    y = signal.sosfilt(signal.butter(5, [band.low, band.high], "bandpass", fs=SR, output="sos"), x.astype(np.float64))
    frame = SR // fps
    rms = np.array([np.sqrt(np.mean(y[int(t * SR) - frame : int(t * SR)] ** 2)) for t in times])
    assert at_least <= _window_rank_correlation(values, rms) <= at_most
