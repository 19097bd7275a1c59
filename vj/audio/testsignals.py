"""Synthesized drum patterns with known beat and onset times, for tests and accuracy benchmarks.

A pattern is kick on beats 1 and 3, snare on 2 and 4, closed hi-hats on eighths (optionally swung),
with tempo changes and a quiet intro (hats, or a sustained pad without onsets) as options. Every event
time is returned, so beat and onset detectors can be scored against the truth.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DrumTrack:
    """A rendered pattern: mono samples and the true times (seconds) of beats and of each instrument."""

    samples: np.ndarray
    sample_rate: int
    beats: np.ndarray
    onsets: dict = field(default_factory=dict)

    @property
    def all_onsets(self):
        return np.unique(np.round(np.concatenate(list(self.onsets.values())), 6))


def _kick(sr, rng):
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    freq = 45 + 110 * np.exp(-t / 0.03)  # pitch drop 155 -> 45 Hz
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def _snare(sr, rng):
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    noise = rng.standard_normal(n) * np.exp(-t / 0.06)
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    return 0.5 * noise + 0.6 * body


def _hat(sr, rng):
    n = int(0.06 * sr)
    t = np.arange(n) / sr
    noise = np.diff(rng.standard_normal(n + 1))  # differentiated noise: mostly high frequencies
    return 0.25 * noise * np.exp(-t / 0.015)


def _pad(n, sr, rng):
    """n samples of a sustained A minor chord of soft sawtooth-like tones (a synth pad), fading in over
    0.5 s: a sound that changes slowly, so it has next to no onsets. Each tone wanders in pitch (a few
    cents, at random, as detuned analog oscillators do), so its partials beat irregularly: an exactly
    periodic chord makes an exactly periodic onset signal, a pulse a tracker may rightly follow."""
    t = np.arange(n) / sr
    knots = np.arange(0.0, n / sr + 0.5, 0.5)
    out = np.zeros(n)
    for f in (110.0, 220.0, 261.63, 329.63):
        wander = 1.0 + 0.003 * np.interp(t, knots, rng.standard_normal(len(knots)))
        phase = 2 * np.pi * np.cumsum(f * wander) / sr
        for k in range(1, 5):
            out += np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    return out * np.minimum(t / 0.5, 1.0) / np.max(np.abs(out))


def drum_pattern(
    segments, sample_rate=48000, swing=0.0, intro=0.0, intro_gain=0.05, hats=True, seed=0, tail=1.0, pad=0.0
):
    """Render [(bpm, n_beats), ...] as one track; `swing` delays every second eighth by that fraction
    of an eighth; `intro` seconds of hats only at `intro_gain` come first (the beats start after it);
    `pad` > 0 plays a sustained pad at that gain (relative to the drums' peak) through the intro, ending
    as the drums come in (with `intro_gain` 0, an intro of pad alone)."""
    rng = np.random.default_rng(seed)
    sr = sample_rate
    sounds = {"kick": _kick(sr, rng), "snare": _snare(sr, rng), "hat": _hat(sr, rng)}
    events = {"kick": [], "snare": [], "hat": []}
    gains = {"kick": [], "snare": [], "hat": []}
    beats = []
    t = intro
    if intro > 0:
        step = 60.0 / segments[0][0] / 2
        for k in range(int(intro / step)):
            events["hat"].append(k * step)
            gains["hat"].append(intro_gain)
    beat_index = 0
    for bpm, n_beats in segments:
        period = 60.0 / bpm
        for _ in range(n_beats):
            beats.append(t)
            events["kick" if beat_index % 2 == 0 else "snare"].append(t)
            gains["kick" if beat_index % 2 == 0 else "snare"].append(1.0)
            if hats:
                for half in (0, 1):
                    events["hat"].append(t + half * period / 2 * (1 + swing))
                    gains["hat"].append(1.0)
            t += period
            beat_index += 1
    out = np.zeros(int((t + tail) * sr) + 1)
    for name, times in events.items():
        sound = sounds[name]
        for at, gain in zip(times, gains[name]):
            start = int(round(at * sr))
            part = out[start : start + len(sound)]
            part += gain * sound[: len(part)]
    if pad > 0:
        n = int(intro * sr)
        out[:n] += pad * np.max(np.abs(out)) * _pad(n, sr, rng)
    out *= 0.5 / max(1e-9, np.max(np.abs(out)))
    onsets = {name: np.array(times) for name, times in events.items()}
    return DrumTrack(out.astype(np.float32), sr, np.array(beats), onsets)
