"""The beat tracker through song structure: a quiet intro before the drums, a tempo change mid-track."""

import numpy as np
import pytest

from vj.audio.beats import BeatTracker
from vj.audio.filters import control_hop
from vj.config.musical import MUSICAL_VARIABLES
from vj.audio.testsignals import drum_pattern

SR = 48000
HOP = control_hop(SR)
SETTLE = 4.0  # seconds after the drums enter or the tempo changes


def track_beats(track, block=4096):
    """(tick times, variables) of a fresh tracker fed the track in blocks."""
    tracker = BeatTracker(SR, HOP)
    out = np.concatenate(
        [tracker.process(track.samples[i : i + block]) for i in range(0, len(track.samples), block)], axis=1
    )
    return (np.arange(out.shape[1]) + 1) * HOP / SR, dict(zip(MUSICAL_VARIABLES, out))


def assert_settled(track, times, v, bpm, event):
    """From SETTLE s after `event` to the end: `bpm` within 1% and pulses within 30 ms of the true beats."""
    end = track.beats[-1]
    after = (times >= event + SETTLE) & (times <= end)
    worst = v["bpm"][after][np.argmax(np.abs(v["bpm"][after] / bpm - 1))]
    assert abs(worst / bpm - 1) <= 0.01, f"bpm reads {worst:.1f} against {bpm}"
    pulses = times[np.diff(v["beat_count"], prepend=0.0) > 0]
    pulses = pulses[(pulses >= event + SETTLE) & (pulses <= end + 0.03)]
    truth = track.beats[track.beats >= event + SETTLE + 0.03]
    assert max(np.min(np.abs(pulses - b)) for b in truth) <= 0.03, "a true beat has no pulse within 30 ms"
    assert max(np.min(np.abs(track.beats - p)) for p in pulses) <= 0.03, "a pulse is off the true beats"


@pytest.mark.parametrize(
    "bpm, intro, hats", [(124, 4.0, False), (124, 6.0, True), (100, 4.0, True), (150, 3.0, False), (90, 8.0, False)]
)
def test_right_tempo_after_a_quiet_pad_intro(bpm, intro, hats):
    """A sustained pad 20 dB under the drums, alone for `intro` s, then drums (with or without hats)."""
    track = drum_pattern([(bpm, int(bpm / 3))], sample_rate=SR, intro=intro, intro_gain=0.0, pad=0.1, hats=hats)
    times, v = track_beats(track)
    assert_settled(track, times, v, bpm, track.beats[0])


@pytest.mark.parametrize(
    "old, new, hats",
    [
        (124, 130.2, False),
        (118, 123.9, True),
        (128, 121.6, True),
        (100, 95.0, True),
        (150, 157.5, False),
        (140, 133.0, False),
    ],
)
def test_follows_a_tempo_change_of_5_percent(old, new, hats):
    """Steady drums for 30 s, then 5% faster or slower (as between two tracks of a DJ set)."""
    track = drum_pattern([(old, int(old / 2)), (new, int(new / 3))], sample_rate=SR, hats=hats)
    times, v = track_beats(track)
    assert_settled(track, times, v, new, track.beats[int(old / 2)])
