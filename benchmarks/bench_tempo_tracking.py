"""Tempo tracking through song structure, on synthesized drums: how long after the drums enter (after an
intro of a quiet pad) or after a tempo change `bpm` settles within 1% of the true tempo, and the pulses on
the true beats.

Run: python benchmarks/bench_tempo_tracking.py [--quick] [--cases]

Cases: a pad 20 dB under the drums alone for 2, 4 or 8 s, then drums; 20 s of drums, then a tempo 3, 5 or
8% faster or slower; at 90..170 BPM, with eighth hats (`drums`) and without (`kick/snare`).

Per case: `bpm 1%` = seconds from the event (first drum beat, or first beat at the new tempo) until `bpm`
stays within 1% of the true tempo to the end of the track ("never" if it does not); `beats 30 ms` =
seconds until every later pulse is within 30 ms of a true beat and every later true beat has a pulse within
30 ms; `read` = the median `bpm` over the last 4 s.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["NUMBA_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

from vj.audio.beats import BeatTracker  # noqa: E402
from vj.audio.filters import control_hop  # noqa: E402
from vj.config.musical import MUSICAL_VARIABLES  # noqa: E402
from vj.audio.testsignals import drum_pattern  # noqa: E402

SR = 48000
BLOCK = 4096
TRACK_SECONDS = 24.0  # of drums per segment


def run(track):
    """(tick times, {variable: values}) of a fresh tracker fed the track in blocks."""
    tracker = BeatTracker(SR, control_hop(SR))
    out = np.concatenate(
        [tracker.process(track.samples[i : i + BLOCK]) for i in range(0, len(track.samples), BLOCK)], axis=1
    )
    return (np.arange(out.shape[1]) + 1) * control_hop(SR) / SR, dict(zip(MUSICAL_VARIABLES, out))


def settle_time(times, good, event, end):
    """Seconds from `event` until `good` holds at every time up to `end` (None if it never does)."""
    window = (times >= event) & (times <= end)
    bad = times[window & ~good]
    if not bad.size:
        return 0.0
    return None if bad[-1] >= end - 0.5 else float(bad[-1] - event)


def beat_settle_time(pulses, beats, event, end, tolerance=0.03):
    """Seconds from `event` until pulses and true beats (up to `end`) pair within `tolerance`."""
    pulses = pulses[(pulses >= event) & (pulses <= end)]
    truth = beats[(beats >= event) & (beats <= end)]
    if not pulses.size:
        return None
    wrong = [p for p in pulses if np.min(np.abs(beats - p)) > tolerance]
    wrong += [b for b in truth if np.min(np.abs(pulses - b)) > tolerance]
    if not wrong:
        return 0.0
    return None if max(wrong) >= end - 1.0 else float(max(wrong) - event)


def case(segments, intro, hats):
    """(bpm settle, beat settle, bpm read at the end) after the last event of the track."""
    track = drum_pattern(segments, sample_rate=SR, intro=intro, intro_gain=0.0, pad=0.1 if intro else 0.0, hats=hats)
    times, v = run(track)
    event = track.beats[sum(n for _, n in segments[:-1])]
    end = track.beats[-1]
    bpm = segments[-1][0]
    pulses = times[np.diff(v["beat_count"], prepend=0.0) > 0]
    read = float(np.median(v["bpm"][times >= end - 4]))
    return (
        settle_time(times, np.abs(v["bpm"] / bpm - 1) <= 0.01, event, end),
        beat_settle_time(pulses, track.beats, event, end),
        read,
    )


def cases(quick):
    """(group, label, segments, intro, hats) of the synthetic cases."""
    tempos = (100, 124, 150) if quick else (90, 100, 124, 140, 170)
    out = []
    for hats in (True, False):
        drums = "drums" if hats else "kick/snare"
        for bpm in tempos:
            for intro in (4.0,) if quick else (2.0, 4.0, 8.0):
                out.append(
                    (
                        f"pad intro, then {drums}",
                        f"pad {intro:g} s, then {drums} at {bpm} BPM",
                        [(bpm, int(bpm * TRACK_SECONDS / 60))],
                        intro,
                        hats,
                    )
                )
        for bpm in tempos:
            for change in (0.05, -0.05) if quick else (0.03, -0.03, 0.05, -0.05, 0.08, -0.08):
                new = round(bpm * (1 + change), 1)
                segments = [(bpm, int(bpm * 20 / 60)), (new, int(new * TRACK_SECONDS / 60))]
                group = f"tempo change {'+' if change > 0 else '-'}3..8%, {drums}"
                out.append((group, f"{drums} {bpm} -> {new} BPM ({change:+.0%})", segments, 0.0, hats))
    return out


def fmt(seconds):
    return "never" if seconds is None else f"{seconds:.1f}"


def summary(settles):
    """'settled/all, median, worst' of a group's settle times (None = never)."""
    done = [s for s in settles if s is not None]
    worst = fmt(max(done)) if len(done) == len(settles) else "never"
    return f"{len(done)}/{len(settles)} | {fmt(np.median(done) if done else None)} | {worst}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    parser.add_argument("--cases", action="store_true", help="a row per case, then the summary")
    args = parser.parse_args()
    if args.cases:
        print("| case | bpm within 1% after (s) | beats within 30 ms after (s) | bpm read at the end |")
        print("|---|---:|---:|---:|")
    groups = {}
    for group, label, segments, intro, hats in cases(args.quick):
        bpm_s, beat_s, read = case(segments, intro, hats)
        groups.setdefault(group, ([], []))
        groups[group][0].append(bpm_s)
        groups[group][1].append(beat_s)
        if args.cases:
            print(f"| {label} | {fmt(bpm_s)} | {fmt(beat_s)} | {read:.1f} |", flush=True)
    print("\n| cases | bpm within 1%: settled, median s, worst s | beats within 30 ms: settled, median s, worst s |")
    print("|---|---|---|")
    for group, (bpm_settles, beat_settles) in groups.items():
        print(f"| {group} | {summary(bpm_settles)} | {summary(beat_settles)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
