"""Musical variables (beat tracker, per-band hits): live cost, and agreement with librosa on recordings.

Run: python benchmarks/bench_beats.py cost
     python benchmarks/bench_beats.py compare DIR [DIR...] [--tracks 10] [--seconds 60] [--cache DIR]
(compare needs librosa: pip install librosa)
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["NUMBA_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from vj.audio import ArraySource, AudioAnalyzer, Band, FileSource  # noqa: E402

SR = 48000
LIVE_BLOCK = 512
FILE_BLOCK = 65536
CENTERS = (50, 100, 200, 400, 800, 1600, 3200, 6400)  # octave bands, width 0.7 x center
HIT_CENTERS = (50, 3200)
EXTENSIONS = {".ogg", ".mp3", ".flac", ".wav"}


# -- cost ------------------------------------------------------------------------------------------
def _best_of(make, feed_block, x, repeats=3):
    """Best wall time of feeding x in live blocks to a fresh object (a warm-up run first, for numba JIT)."""
    warm = make()
    feed_block(warm, x[:SR])
    best = float("inf")
    for _ in range(repeats):
        obj = make()
        start = time.perf_counter()
        for pos in range(0, len(x), LIVE_BLOCK):
            feed_block(obj, x[pos : pos + LIVE_BLOCK])
        best = min(best, time.perf_counter() - start)
    return best


def cost(seconds=60.0):
    from vj.audio.beats import BeatTracker
    from vj.audio.filters import control_hop
    from vj.audio.testsignals import drum_pattern

    tr = drum_pattern([(124, 124)], sample_rate=SR)
    n = int(seconds * SR)
    x = np.resize(tr.samples.astype(np.float32), n)  # tiles if shorter than `seconds`
    audio_s = n / SR
    hop = control_hop(SR)

    def band_list(hits):
        return [Band(f"b{i}", c, 0.7 * c, hit=hits and c in HIT_CENTERS) for i, c in enumerate(CENTERS)]

    rows = []
    t_beats = _best_of(lambda: BeatTracker(SR, hop), lambda o, b: o.process(b), x)
    rows.append(("BeatTracker alone", t_beats))
    t_hits = _best_of(lambda: AudioAnalyzer(ArraySource(x, SR), band_list(True)), lambda o, b: o.feed(b), x)
    t_nohits = _best_of(lambda: AudioAnalyzer(ArraySource(x, SR), band_list(False)), lambda o, b: o.feed(b), x)
    rows.append((f"AudioAnalyzer, 8 bands, {len(HIT_CENTERS)} with hit", t_hits))
    rows.append(("AudioAnalyzer, 8 bands, no hit", t_nohits))
    rows.append((f"=> {len(HIT_CENTERS)} hit detectors (difference)", t_hits - t_nohits))
    rows.append(("=> analyzer without BeatTracker (estimate: no-hit minus BeatTracker)", t_nohits - t_beats))

    print(
        f"Cost at {SR} Hz, {LIVE_BLOCK}-sample blocks, {audio_s:.0f} s of drum_pattern 124 BPM, "
        f"best of 3, OMP/NUMBA threads = 1, control hop {hop}\n"
    )
    print("| what | time (s) | % of one core |")
    print("|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / audio_s * 100:.2f} |")


# -- compare ---------------------------------------------------------------------------------------
def f_measure(estimated, reference, tolerance):
    """F-measure with greedy one-to-one matching: closest pairs within `tolerance` first."""
    est = np.asarray(estimated, float)
    ref = np.asarray(reference, float)
    if len(est) == 0 and len(ref) == 0:
        return 1.0
    if len(est) == 0 or len(ref) == 0:
        return 0.0
    d = np.abs(est[:, None] - ref[None, :])
    i, j = np.nonzero(d <= tolerance)
    order = np.argsort(d[i, j], kind="stable")
    used_e, used_r = set(), set()
    for a, b in zip(i[order], j[order]):
        if a not in used_e and b not in used_r:
            used_e.add(a)
            used_r.add(b)
    matched = len(used_e)
    precision, recall = matched / len(est), matched / len(ref)
    return 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)


def vj_analysis(path, seconds):
    source = FileSource(path)
    a = AudioAnalyzer(source, [Band("all", 4000, 7800, hit=True)])
    limit = int(seconds * a.sample_rate)
    tables, done = [], 0
    while done < limit:
        block = source.read(min(FILE_BLOCK, limit - done))
        if len(block) == 0:
            break
        tables.append(a.feed(block))
        done += len(block)
    source.close()
    table = np.concatenate(tables, axis=1)
    v = dict(zip(a.names, table))
    t = (np.arange(table.shape[1]) + 1) * a.hop / a.sample_rate
    beats = t[np.diff(v["beat_count"], prepend=v["beat_count"][0]) > 0]
    onsets = t[np.diff(v["all_hit"], prepend=0) > 0]
    bpm = v["bpm"]
    locked = bpm > 0
    late = locked & (t >= 10.0)
    tempo = float(np.median(bpm[late])) if late.any() else 0.0
    return tempo, beats, onsets, float(locked.mean()), done / a.sample_rate


def tempo_relation(ref, est):
    if ref <= 0 or est <= 0:
        return "no"
    if abs(est - ref) <= 0.04 * ref:
        return "yes"
    for k in (2.0, 0.5):
        if abs(est - k * ref) <= 0.04 * k * ref:
            return f"octave ({'2x' if k == 2 else '1/2x'})"
    return "no"


def librosa_reference(path, seconds, cache=None):
    """(tempo, beat times, onset times) from librosa's offline beat_track and onset_detect; kept in
    `cache` (a folder) when given, since they take longer than the whole vj analysis."""
    saved = Path(cache) / f"{path.name}.{seconds:g}s.npz" if cache else None
    if saved and saved.exists():
        z = np.load(saved)
        return float(z["tempo"]), z["beats"], z["onsets"]
    import librosa

    y, sr = librosa.load(str(path), sr=None, mono=True, duration=seconds)
    tempo, beat_frames = librosa.beat.beat_track(y=y, sr=sr)
    tempo = float(np.atleast_1d(tempo)[0])
    beats = librosa.frames_to_time(beat_frames, sr=sr)
    onsets = librosa.onset.onset_detect(y=y, sr=sr, units="time")
    if saved:
        saved.parent.mkdir(parents=True, exist_ok=True)
        np.savez(saved, tempo=tempo, beats=beats, onsets=onsets)
    return tempo, beats, onsets


def compare(dirs, max_tracks, seconds, cache=None):
    import librosa

    files = sorted(p for d in dirs for p in Path(d).rglob("*") if p.suffix.lower() in EXTENSIONS)
    seen, tracks = set(), []
    for p in files:  # the same recording may sit in several folders
        if p.name not in seen:
            seen.add(p.name)
            tracks.append(p)
    tracks = tracks[:max_tracks]
    print(
        f"librosa {librosa.__version__}; {len(tracks)} tracks, first {seconds:g} s; beat F at +-70 ms "
        f"(after 5 s), onset F at +-50 ms; vj tempo = median bpm while locked after 10 s\n"
    )
    print(
        "| track | librosa BPM | vj BPM | tempo agrees (4%) | beat F | onset F | vj locked | "
        "n beats lr/vj | n onsets lr/vj |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    stats = []
    for p in tracks:
        lr_tempo, lr_beats, lr_onsets = librosa_reference(p, seconds, cache)
        vj_tempo, vj_beats, vj_onsets, locked, _ = vj_analysis(p, seconds)
        rel = tempo_relation(lr_tempo, vj_tempo)
        fb = f_measure(vj_beats[vj_beats >= 5.0], lr_beats[lr_beats >= 5.0], 0.070)
        fo = f_measure(vj_onsets, lr_onsets, 0.050)
        stats.append((rel, fb, fo, locked))
        print(
            f"| {p.name} | {lr_tempo:.1f} | {vj_tempo:.1f} | {rel} | {fb:.3f} | {fo:.3f} | {locked:.0%} | "
            f"{len(lr_beats)}/{len(vj_beats)} | {len(lr_onsets)}/{len(vj_onsets)} |"
        )
    n = len(stats)
    if n:
        agree = sum(s[0] == "yes" for s in stats)
        octave = sum(s[0].startswith("octave") for s in stats)
        print(
            f"\nSummary: {n} tracks; tempo agrees within 4%: {agree}/{n}, octave (2x or 1/2x): {octave}/{n}; "
            f"mean beat F {np.mean([s[1] for s in stats]):.3f}; mean onset F {np.mean([s[2] for s in stats]):.3f}; "
            f"mean locked {np.mean([s[3] for s in stats]):.0%}"
        )


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--seconds", type=float, default=60.0)
    m = sub.add_parser("compare")
    m.add_argument("dirs", nargs="+")
    m.add_argument("--tracks", type=int, default=10)
    m.add_argument("--seconds", type=float, default=60.0)
    m.add_argument("--cache", help="folder that keeps librosa's results between runs")
    args = parser.parse_args()
    if args.mode == "cost":
        cost(args.seconds)
    else:
        compare(args.dirs, args.tracks, args.seconds, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
