"""Musical variables: per-band hits and the beat tracker, scored against synthesized drums with known times."""

import numpy as np
import pytest

from vj.audio import ArraySource, AudioAnalyzer, Band
from vj.audio.beats import BeatSettings, BeatTracker
from vj.audio.filters import control_hop
from vj.config.musical import MUSICAL_VARIABLES
from vj.audio.testsignals import drum_pattern

SR = 48000
HOP = control_hop(SR)


def f_measure(estimated, reference, tolerance=0.05):
    """F-measure of event times with one-to-one matching within +-tolerance (mir_eval's definition)."""
    estimated, reference = np.sort(estimated), np.sort(reference)
    used, hits = set(), 0
    for r in reference:
        near = [i for i in np.nonzero(np.abs(estimated - r) <= tolerance)[0] if i not in used]
        if near:
            used.add(min(near, key=lambda i: abs(estimated[i] - r)))
            hits += 1
    if not hits:
        return 0.0
    precision, recall = hits / len(estimated), hits / len(reference)
    return 2 * precision * recall / (precision + recall)


def track_beats(track, settings=BeatSettings(), block=4096):
    """(tick times, variables (5, n_ticks)) of the tracker fed in blocks."""
    tracker = BeatTracker(SR, HOP, settings)
    out = np.concatenate(
        [tracker.process(track.samples[i : i + block]) for i in range(0, len(track.samples), block)], axis=1
    )
    return (np.arange(out.shape[1]) + 1) * HOP / SR, dict(zip(MUSICAL_VARIABLES, out))


def rises(times, values):
    """Times where a pulse restarts or a count goes up."""
    return times[np.diff(values, prepend=0.0) > 0]


TEMPO_CASES = [(bpm, swing) for bpm in (80, 90, 100, 120, 140, 160, 180) for swing in (0.0, 0.33)]


@pytest.mark.parametrize("bpm, swing", TEMPO_CASES)
def test_tempo_and_beats_lock_within_4_seconds(bpm, swing):
    track = drum_pattern([(bpm, int(bpm / 3))], sample_rate=SR, swing=swing)  # 20 s
    times, v = track_beats(track)
    first, last = track.beats[0], track.beats[-1]
    steady = (times >= first + 4) & (times <= last)
    assert np.all(np.abs(v["bpm"][steady] / bpm - 1) <= 0.01), "bpm off by more than 1% (or by an octave)"
    pulses = rises(times, v["beat_count"])
    played = pulses[(pulses >= first + 4 - 0.03) & (pulses <= last + 0.03)]
    truth = track.beats[track.beats >= first + 4 - 0.03]
    assert max(np.min(np.abs(played - b)) for b in truth) <= 0.03, "a true beat has no pulse within 30 ms"
    assert max(np.min(np.abs(truth - p)) for p in played) <= 0.03, "a pulse is more than 30 ms from any beat"
    scored = pulses[(pulses >= 5.0) & (pulses <= last + 0.1)]  # mir_eval's convention: the first 5 s are not scored
    assert f_measure(scored, track.beats[track.beats >= 5.0]) >= 0.9


@pytest.mark.parametrize("segments, change", [([(120, 40), (132, 44)], 20.0), ([(150, 40), (100, 30)], 16.0)])
def test_follows_a_tempo_change_within_4_seconds(segments, change):
    track = drum_pattern(segments, sample_rate=SR)
    times, v = track_beats(track)
    new_bpm = segments[1][0]
    after = (times >= change + 4) & (times <= track.beats[-1])
    assert np.all(np.abs(v["bpm"][after] / new_bpm - 1) <= 0.01)
    pulses = rises(times, v["beat_count"])
    late = track.beats[track.beats >= change + 4]
    assert f_measure(pulses[pulses >= change + 4 - 0.05], late) >= 0.9


def test_quiet_intro_then_drums():
    track = drum_pattern([(110, 37)], sample_rate=SR, intro=4.0)
    times, v = track_beats(track)
    first = track.beats[0]
    steady = (times >= first + 4) & (times <= track.beats[-1])
    assert np.all(np.abs(v["bpm"][steady] / 110 - 1) <= 0.01)
    pulses = rises(times, v["beat_count"])
    assert f_measure(pulses[pulses >= first + 4], track.beats[track.beats >= first + 4]) >= 0.9


def test_no_beats_in_silence_noise_or_random_onsets():
    rng = np.random.default_rng(5)
    silence = np.zeros(SR * 10, np.float32)
    noise = (0.1 * rng.standard_normal(SR * 10)).astype(np.float32)
    # beatless percussion: hats at random (Poisson) times, like rain or speech syllables
    random_hits = np.zeros(SR * 20, np.float32)
    hat = drum_pattern([(120, 1)], sample_rate=SR, seed=1).samples[:2400]
    for at in np.cumsum(rng.exponential(0.3, 60)):
        start = int(at * SR)
        if start + len(hat) < len(random_hits):
            random_hits[start : start + len(hat)] += hat
    for signal in (silence, noise, random_hits):
        tracker = BeatTracker(SR, HOP)
        v = dict(zip(MUSICAL_VARIABLES, tracker.process(signal)))
        assert v["beat_count"][-1] == 0 and np.all(v["beat"] == 0) and np.all(v["bpm"] == 0)


def test_beat_stops_after_the_music_stops():
    track = drum_pattern([(120, 20)], sample_rate=SR, tail=12.0)
    times, v = track_beats(track)
    assert v["bpm"][np.searchsorted(times, 9.0)] == pytest.approx(120, rel=0.01)
    assert v["bpm"][-1] == 0 and np.all(np.diff(v["beat_count"][times > 16.0]) == 0)


def test_phases_pulse_and_count_are_consistent():
    track = drum_pattern([(120, 40)], sample_rate=SR)
    times, v = track_beats(track, BeatSettings(beats_per_bar=3, beat_decay=0.05))
    locked = v["bpm"] > 0
    assert np.all((v["beat_phase"] >= 0) & (v["beat_phase"] < 1) & (v["bar_phase"] >= 0) & (v["bar_phase"] < 1))
    beats = np.nonzero(np.diff(v["beat_count"], prepend=0.0) > 0)[0]
    assert np.all(v["beat"][beats] > np.exp(-HOP / SR / 0.05)) and np.all(v["beat_phase"][beats] < 0.01)
    k = beats[5]
    assert v["beat"][k + int(0.05 * SR / HOP)] == pytest.approx(np.exp(-1), abs=0.03)  # decays with beat_decay
    bar_starts = beats[np.diff(np.floor(v["bar_phase"][beats] * 3), prepend=-1) != 0]
    assert np.all(np.isin(np.round(v["bar_phase"][beats] * 3), [0, 1, 2]))
    assert np.all(v["beat_phase"][~locked] == 0) and len(bar_starts) > 0
    mid = (times > 10) & (times < 19)
    assert np.all(np.abs(np.diff(v["beat_phase"][mid])) < 0.01 + (np.diff(v["beat_count"][mid]) > 0))


def test_fixed_bpm_free_runs_without_audio_and_follows_the_audio_phase():
    tracker = BeatTracker(SR, HOP, BeatSettings(bpm=150))
    v = dict(zip(MUSICAL_VARIABLES, tracker.process(np.zeros(SR * 4, np.float32))))
    times = (np.arange(len(v["beat"])) + 1) * HOP / SR
    assert np.allclose(rises(times, v["beat_count"]), np.arange(0, 4.01, 0.4), atol=0.002)
    assert np.all(v["bpm"] == 150)
    # with drums at 150 BPM whose beats are 0.13 s off the free-running grid, the phase moves onto them
    track = drum_pattern([(150, 50)], sample_rate=SR, intro=0.13, intro_gain=0.0)
    times, v = track_beats(track, BeatSettings(bpm=150))
    pulses = rises(times, v["beat_count"])
    late = pulses[(pulses > 8) & (pulses < track.beats[-1])]
    assert max(np.min(np.abs(track.beats - p)) for p in late) < 0.03


def test_tempo_range_decides_the_octave():
    track = drum_pattern([(180, 60)], sample_rate=SR)
    times, v = track_beats(track, BeatSettings(tempo_range=(60, 120)))
    assert v["bpm"][-int(2 * SR / HOP)] == pytest.approx(90, rel=0.01)


def test_tap_tempo_and_downbeat():
    tracker = BeatTracker(SR, HOP)
    silence = np.zeros(SR // 2, np.float32)
    tracker.process(silence)  # t = 0.5
    tracker.tap(0.5)
    tracker.process(silence)  # t = 1.0
    tracker.tap(1.0)  # two taps 0.5 s apart: 120 BPM, a beat at 1.0
    v = dict(zip(MUSICAL_VARIABLES, tracker.process(np.zeros(SR * 2, np.float32))))
    times = 1.0 + (np.arange(len(v["bpm"])) + 1) * HOP / SR
    assert np.all(v["bpm"] == 120)
    assert np.allclose(rises(times, v["beat_count"]), [1.5, 2.0, 2.5, 3.0], atol=0.002)
    tracker.downbeat(3.0)  # the beat at 3.0 is the first of its bar
    v = dict(zip(MUSICAL_VARIABLES, tracker.process(np.zeros(SR // 10, np.float32))))
    assert v["bar_phase"][-1] < 0.25 / 4 + 0.01
    tracker.follow_audio()
    assert tracker.fixed_period is None


def test_hits_mark_the_onsets_in_their_band():
    track = drum_pattern([(124, 40)], sample_rate=SR, swing=0.2)
    bands = [
        Band("kick", 65, 70, hit=True),
        Band("hats", 9000, 6000, hit=True),
        Band("kick_only", 65, 70, hit=True, hit_sensitivity=0.0),
    ]
    analyzer = AudioAnalyzer(ArraySource(track.samples, SR), bands)
    table = dict(zip(analyzer.names, analyzer.feed(track.samples)))
    times = (np.arange(len(table["kick"])) + 1) * HOP / SR
    on = track.onsets
    # the synthesized snare has energy 17 dB under the kick's in 30-100 Hz, and 7 dB over the hats' in 6-12 kHz:
    # within the default gate (20 dB) both count there; at sensitivity 0 (gate 10 dB) only the kick does
    assert f_measure(rises(times, table["kick_hit"]), np.union1d(on["kick"], on["snare"])) >= 0.9
    assert f_measure(rises(times, table["hats_hit"]), np.union1d(on["hat"], on["snare"])) >= 0.9
    assert f_measure(rises(times, table["kick_only_hit"]), on["kick"]) >= 0.9
    k = np.nonzero(np.diff(table["kick_hit"], prepend=0) > 0)[0][3]
    assert table["kick_hit"][k] == 1.0
    assert table["kick_hit"][k + int(0.15 * SR / HOP)] == pytest.approx(np.exp(-1), abs=0.02)  # hit_decay 0.15


def test_hits_ignore_silence_and_steady_tones():
    from conftest import tone

    x = np.concatenate([np.zeros(SR, np.float32), tone(70, 3.0), np.zeros(SR, np.float32)])
    analyzer = AudioAnalyzer(ArraySource(x, SR), [Band("b", 65, 70, hit=True)])
    hits = rises((np.arange(len(x) // HOP) + 1) * HOP / SR, analyzer.feed(x)[1])
    assert len(hits) == 1 and abs(hits[0] - 1.0) < 0.05  # the tone's start, nothing while it holds


def test_offline_values_equal_the_frame_by_frame_path():
    track = drum_pattern([(128, 30)], sample_rate=SR, swing=0.1)
    bands = [Band("fLo", 70, 60, hit=True), Band("fHi", 8000, 4000, hit=True, envelope="rms")]
    times = np.arange(0, 16, 1 / 30)
    live = AudioAnalyzer(ArraySource(track.samples, SR), bands)
    slow = np.array([list(live.advance_to(t).values()) for t in times]).T
    fast = AudioAnalyzer(ArraySource(track.samples, SR), bands).values_at(times)
    assert live.names[-5:] == list(MUSICAL_VARIABLES)
    np.testing.assert_array_equal(fast, slow)
    assert slow[live.names.index("bpm")][-1] == pytest.approx(128, rel=0.01)


def test_any_block_split_gives_identical_values():
    """Onset frames are computed many per call offline and one per call live: the values must not differ."""
    track = drum_pattern([(124, 12)], sample_rate=SR)
    whole = BeatTracker(SR, HOP).process(track.samples)
    rng = np.random.default_rng(7)
    cuts = np.cumsum(rng.integers(1, 3000, size=len(track.samples) // 1000))
    cuts = np.concatenate(([0], cuts[cuts < len(track.samples)], [len(track.samples)]))
    tracker = BeatTracker(SR, HOP)
    pieces = np.concatenate([tracker.process(track.samples[a:b]) for a, b in zip(cuts[:-1], cuts[1:])], axis=1)
    assert whole[3, -1] == pytest.approx(124, rel=0.01)  # locked, so every part of the tracker ran
    np.testing.assert_array_equal(pieces, whole)
