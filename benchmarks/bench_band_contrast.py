r"""Band contrast: how closely each band's variable follows the band's short-time energy on real music.

Why: with the `peak` envelope and a 0.15 s release, a 2-6 kHz band on a track with dense hi-hats follows
its energy poorly (the level does not fall between hits). This measures, for every audio file under a
folder and every band of BANDS, vj's real variable (`AudioAnalyzer` with one `Band` per band and
configuration, frames at 30 fps, causal) against the band's RMS per frame:

- r      Spearman rank correlation between the variable and the band RMS (same order-5 Butterworth
         bandpass, float64, RMS over the frame's own 1/30 s: the samples just before the frame's time),
         inside consecutive 5 s windows (150 frames), averaged over the windows that are not near silent;
- r_d    the same for the frame-to-frame changes: does each rise and fall of the variable go with one of
         the energy? (flicker with a low r_d is noise, not pulses);
- range  mean over windows of p90 - p10 of the variable: how far it moves;
- floor  mean over windows of p10 of the variable: where it sits between hits (one that holds through
         dense hits sits high);
- flick  mean |v[i] - v[i-1]|: how much it jumps from frame to frame (smoothness);
- hits   band onsets per second of the track (frames whose band RMS is >= 3 dB above the previous one's),
         to tell dense material (>= --dense-hits, default 4/s) from sparse.

Near-silent windows are skipped: those whose band RMS over the window is more than 40 dB below the band's
loudest window in the track, or below -90 dBFS. A window where the variable is constant counts r = 0.
`--steady` adds synthetic sustained sound (sines at a band's low edge and centre, white noise), where
the ideal variable is constant: its flicker is what a VJ would see as jitter on held notes.

Configurations: `--configs` picks named ones from CONFIGS; `--config NAME=SPEC` adds one; the shortcuts
`--envelope/--release/--attack` add one named `cli`. A SPEC is `key=value,...` over the old defaults
(envelope=peak, attack=0.005, release=0.15, normalize=auto, agc_time=10), or `vj` for whatever defaults
vj's Band has now (to check an implemented change). `release` takes seconds or a rule of the band:
`auto` (the recommendation, auto_release below), `flo:K:LO:HI` = clip(K / f_low, LO, HI), `fc:K:LO:HI` =
clip(K / f_center, LO, HI), `sqrt:K:LO:HI` = clip(K / sqrt(f_center), LO, HI). `proto=floor|flux` are
detectors vj does not have (numpy prototypes on vj's unnormalized level); `proto=ref` is the band RMS
itself under vj's auto gain (the ceiling: r < 1 only because the gain moves inside windows).

Corpus used for the report (Debian bookworm packages, about 175 MB of downloads, 12 tracks, 64 min;
licences in each package's /usr/share/doc/PKG/copyright):

    mkdir -p out/corpus/debs out/corpus/selected && cd out/corpus
    (cd debs && apt-get download nexuiz-music fretsonfire-songs-muldjord asc-music singularity-music)
    for d in debs/*.deb; do dpkg -x "$d" "$(basename "$d" | cut -d_ -f1)"; done
    unzip -o -q nexuiz-music/usr/share/games/nexuiz/data/music.pk3 -d nexuiz-music/extracted
    N=nexuiz-music/extracted/sound/cdtracks; S=singularity-music/usr/share/games/singularity/music
    A=asc-music/usr/share/games/asc/music; F=fretsonfire-songs-muldjord/usr/share/games/fretsonfire/data/songs/muldjord
    for t in subcities neuronal-diving thru-the-mirror brainsukker sixtyfour_revisited; do
      cp "$N/$t.ogg" "selected/nexuiz-$t.ogg"; done
    for t in Awakening Nebula "Advanced Simulacra"; do
      cp "$S/$t.ogg" "selected/singularity-$(echo "$t" | tr ' ' _).ogg"; done
    for t in frontiers time_to_strike; do cp "$A/$t.mp3" "selected/asc-$t.mp3"; done
    for t in chaos_god armygeddon; do  # the band and the guitar ship apart: mix them (x0.6, no clipping)
      ffmpeg -v error -y -i "$F/$t/song.ogg" -i "$F/$t/guitar.ogg" \
        -filter_complex amix=inputs=2:normalize=0,volume=0.6 -c:a flac "selected/muldjord-$t.flac"; done

Run (about 2.5 min for the default five configurations on that corpus, one core):

    .venv/bin/python benchmarks/bench_band_contrast.py out/corpus/selected [--steady] [--csv out/contrast.csv]
    .venv/bin/python benchmarks/bench_band_contrast.py DIR --configs old,vj          # after implementing
    .venv/bin/python benchmarks/bench_band_contrast.py DIR --envelope peak --release auto
    .venv/bin/python benchmarks/bench_band_contrast.py DIR --plot out/hats.png --plot-track subcities --plot-start 120
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import signal, stats  # noqa: E402

from vj.audio import AudioAnalyzer, ArraySource, Band, FileSource  # noqa: E402

FPS = 30
WINDOW = 150  # frames: 5 s at 30 fps
SILENT_DB = 40.0  # a window this far below the band's loudest window is skipped
SILENT_ABS = 10 ** (-90 / 20)
HIT_DB = 3.0
AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3", ".oga"}

# (name, low edge, high edge) in Hz; pytti's example filters fLo = 105 +- 32.5, fHi = 900 +- 300.
BANDS = (
    ("sub", 40, 150),
    ("fLo", 72.5, 137.5),
    ("bass", 150, 400),
    ("lowmid", 400, 1000),
    ("fHi", 600, 1200),
    ("mid", 1000, 2000),
    ("hats", 2000, 6000),
    ("air", 6000, 12000),
)

# --steady also checks a deep band: below 50 Hz the recommended release grows to keep held notes steady.
STEADY_BANDS = BANDS + (("deep", 20, 60),)

BASE = {"envelope": "peak", "attack": 0.005, "release": "0.15", "normalize": "auto", "agc_time": 10.0}

CONFIGS = {
    # the report's comparison
    "old": "",  # the defaults before the change
    "auto": "envelope=rms,release=auto",  # the recommendation
    "peak-auto": "envelope=peak,release=auto",  # alternative: keep the peak detector, band release
    "rms0.04": "envelope=rms,release=0.04",  # alternative: one release for every band
    "ref": "proto=ref",  # the band RMS itself, auto-gained (ceiling)
    "vj": "vj",  # vj's Band defaults as they are now
    # explored and set aside (see the report)
    "peak-flo3": "release=flo:3:0.03:0.15",
    "peak0.05": "release=0.05",
    "peak0.03": "release=0.03",
    "peak-fc60": "release=fc:60:0.03:0.15",
    "peak-sqrt3": "release=sqrt:3:0.03:0.15",
    "rms": "envelope=rms",
    "rms-flo3": "envelope=rms,release=flo:3:0.04:0.15",
    "floor": "proto=floor",
    "flux": "proto=flux",
}

# ---------------------------------------------------------------------------------------------------
# The recommendation, as a function of the band (kept here so `--release auto` reproduces the report).
AUTO_K, AUTO_LO, AUTO_HI = 2.0, 0.04, 0.15


def auto_release(low):
    """Recommended default release (s): clip(2 / f_low, 0.04, 0.15), f_low = f_center - f_width/2.

    0.04 s is about one frame at 24-30 fps and the fall time of the `rms` detector itself (its power
    average of 20 ms falls with 40 ms in amplitude), so a hold shorter than that changes nothing there.
    Bands reaching below 50 Hz hold two periods of their lowest frequency, so a held low note does not
    ripple from frame to frame; at 13 Hz and below this is the old 0.15 s.
    """
    return min(AUTO_HI, max(AUTO_LO, AUTO_K / low))


def release_for(spec, low, high):
    """Seconds of release for a band from a spec: a number, `auto`, or `RULE:K:LO:HI`."""
    if spec == "auto":
        return auto_release(low)
    if ":" not in spec:
        return float(spec)
    rule, k, lo, hi = spec.split(":")
    k, lo, hi = float(k), float(lo), float(hi)
    center = (low + high) / 2
    base = {"fc": k / center, "sqrt": k / math.sqrt(center), "flo": k / low}[rule]
    return min(hi, max(lo, base))


def parse_config(text):
    """'key=value,...' over BASE -> dict; 'vj' -> vj's own Band defaults (marked with vj=True)."""
    config = dict(BASE, proto="", vj=text.strip() == "vj")
    for item in filter(None, (part.strip() for part in ("" if config["vj"] else text).split(","))):
        key, _, value = item.partition("=")
        if key not in config or key == "vj":
            sys.exit(f"unknown config key '{key}' in '{text}' (keys: {', '.join(BASE)}, proto)")
        config[key] = value
    if config["proto"] not in ("", "ref", *PROTOS):
        sys.exit(f"unknown proto '{config['proto']}' (one of: ref, {', '.join(PROTOS)})")
    config["attack"] = float(config["attack"])
    config["agc_time"] = float(config["agc_time"])
    return config


def make_band(name, low, high, config):
    """The vj Band for one (band, configuration); prototypes read vj's unnormalized level."""
    if config["vj"]:
        return Band(name, (low + high) / 2, high - low)
    return Band(
        name,
        (low + high) / 2,
        high - low,
        order=5,
        envelope=config["envelope"],
        attack=config["attack"],
        release=release_for(config["release"], low, high),
        normalize="none" if config["proto"] else config["normalize"],
        agc_time=config["agc_time"],
    )


def describe(config):
    """One line: envelope, attack and each band's release in ms, as the Bands get them."""
    if config["proto"] == "ref":
        return "band RMS per frame / its peak over agc_time"
    bands = [make_band(n, lo, hi, config) for n, lo, hi in BANDS]
    rel = ", ".join(
        f"{b.variable_name} {b.release * 1000:.0f}"
        if isinstance(b.release, (int, float))
        else f"{b.variable_name} {b.release}"
        for b in bands
    )
    return f"envelope {bands[0].envelope}, attack {bands[0].attack}, release (ms) {rel}" + (
        f"; prototype {config['proto']}" if config["proto"] else ""
    )


# ---------------------------------------------------------------------------------------------------
# Prototype detectors: numpy on the control-rate level of vj (normalize=none), causal, not in vj yet.


def decaying_max(x, time_constant, rate):
    """e[n] = max(x[n], e[n-1] * exp(-1/(time_constant*rate))), via a running max in the log domain."""
    log_p = -1.0 / (time_constant * rate)
    out = np.empty(len(x))
    state = -np.inf
    for start in range(0, len(x), 1 << 15):
        part = x[start : start + (1 << 15)]
        ramp = np.arange(len(part)) * log_p
        with np.errstate(divide="ignore"):
            run = np.maximum.accumulate(np.log(part) - ramp) + ramp
        run = np.maximum(run, state + ramp + log_p)
        out[start : start + len(part)] = np.exp(run)
        state = run[-1]
    return out


def rising_min(x, time_constant, rate):
    """m[n] = min(x[n], m[n-1] * exp(+1/(time_constant*rate))): follows dips at once, rises slowly."""
    return 1.0 / decaying_max(1.0 / np.maximum(x, 1e-12), time_constant, rate)


def agc(level, config, rate, floor=0.001):
    """vj's `auto` normalization: level / max(decaying peak (agc_time), floor), clipped to 0..1."""
    peak = decaying_max(level, config["agc_time"], rate)
    return np.clip(level / np.maximum(peak, floor), 0.0, 1.0)


FLOOR_TIME = 1.0  # s: how fast the floor tracker rises back after a dip
FLUX_SLOW = 0.25  # s: the slow average a transient must rise above


def proto_floor(level, config, rate):
    """Contrast stretch: (level - floor) / (peak - floor), floor = a slow min tracker of the level.

    A dense band rides on a bed (cymbal wash, reverb) that never falls between hits, so its auto-gain
    value stays in 0.6..1. Subtracting the bed's level (a min that rises back with FLOOR_TIME) maps
    the hits to 0..1. Ranks inside a window change little, the range much.
    """
    peak = np.maximum(decaying_max(level, config["agc_time"], rate), 0.001)
    bed = np.minimum(rising_min(level, FLOOR_TIME, rate), 0.9 * peak)
    return np.clip((level - bed) / (peak - bed), 0.0, 1.0)


def proto_flux(level, config, rate):
    """Transient detector: how far the level rises above its slow one-pole average, auto-gained.

    Responds to each hit (a step up of the level) and not to a steady bed; a crescendo shows little.
    """
    p = math.exp(-1.0 / (FLUX_SLOW * rate))
    slow = signal.lfilter([1 - p], [1, -p], level)
    rise = np.maximum(level - slow, 0.0)
    return agc(rise, config, rate)


PROTOS = {"floor": proto_floor, "flux": proto_flux}
# `proto=ref` is not a detector: the band RMS per frame itself under vj's auto gain (r = 1 by
# definition); its range and flicker are what a variable that follows the energy exactly would show.


# ---------------------------------------------------------------------------------------------------
# Analysis and metric.


def read_track(path, max_seconds, offset):
    """Mono float32 samples of a file (vj's FileSource: same mixdown as a render) and its rate."""
    source = FileSource(path, offset=offset)
    n = int(source.duration * source.sample_rate)
    if max_seconds:
        n = min(n, int(max_seconds * source.sample_rate))
    x = source.read(n)
    source.close()
    return x, source.sample_rate


def frame_bounds(n_samples, sr, fps=FPS):
    """Sample index round(i*sr/fps) of every frame i whose time lies within the track."""
    n_frames = int(n_samples / sr * fps) + 1
    return np.round(np.arange(n_frames) * sr / fps).astype(np.int64)


def vj_frame_values(x, sr, bands, bounds):
    """Per-frame values of vj's variables: frame i = the value after all samples before bounds[i].

    Feeds the track in large blocks and picks the control tick that ends each frame; equal to calling
    `advance_to(i / fps)` per frame (checked by --self-check).
    Returns (values (n_bands, n_frames), control-rate values (n_bands, n_ticks), hop, control rate).
    """
    analyzer = AudioAnalyzer(ArraySource(x, sr), bands)
    rows = [analyzer.names.index(b.variable_name) for b in bands]  # feed() may add other variables
    blocks = [analyzer.feed(x[p : p + (1 << 18)])[rows] for p in range(0, len(x), 1 << 18)]
    ticks = np.concatenate(blocks, axis=1)
    rate = analyzer.bank.control_rate
    hop = int(round(sr / rate))
    k = bounds // hop  # ticks complete before sample bounds[i]
    padded = np.concatenate((np.zeros((len(bands), 1)), ticks), axis=1)
    return padded[:, k], ticks, hop, rate


def band_rms(x, sr, low, high, bounds):
    """RMS per frame of the order-5 Butterworth band (float64): frame i covers [bounds[i-1], bounds[i])."""
    sos = signal.butter(5, [low, high], "bandpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, x.astype(np.float64))
    c = np.concatenate(([0.0], np.cumsum(y * y)))
    b = np.minimum(bounds, len(y))
    power = np.full(len(bounds), np.nan)
    width = np.diff(b)
    power[1:] = np.where(width > 0, (c[b[1:]] - c[b[:-1]]) / np.maximum(width, 1), np.nan)
    return np.sqrt(power)


def _rowwise_corr(a, b):
    """Pearson correlation of each row of a with the same row of b; 0 where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1), 0.0)


def window_metrics(v, ref):
    """Metrics of one variable v against the band RMS ref (both per frame, frame 0 excluded).

    Returns dict of r, r_d, range, flick averaged over kept windows, with the window counts.
    """
    v, ref = v[1:], ref[1:]
    n = (len(ref) // WINDOW) * WINDOW
    v, ref = v[:n].reshape(-1, WINDOW), ref[:n].reshape(-1, WINDOW)
    level = np.sqrt(np.mean(ref**2, axis=1))
    keep = (level > SILENT_ABS) & (level > level.max(initial=0) * 10 ** (-SILENT_DB / 20))
    if not keep.any():
        return None
    v, ref = v[keep], ref[keep]
    r = _rowwise_corr(stats.rankdata(v, axis=1), stats.rankdata(ref, axis=1))
    dv, dref = np.diff(v, axis=1), np.diff(ref, axis=1)
    r_d = _rowwise_corr(stats.rankdata(dv, axis=1), stats.rankdata(dref, axis=1))
    p10, p90 = np.percentile(v, [10, 90], axis=1)
    return {
        "r": r.mean(),
        "r_d": r_d.mean(),
        "range": (p90 - p10).mean(),
        "floor": p10.mean(),
        "flick": np.abs(dv).mean(),
        "windows": int(keep.sum()),
        "of": len(keep),
    }


def hit_rate(ref):
    """Band onsets per second: frames whose RMS is >= HIT_DB above the previous frame's, out of non-silent."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 20 * np.log10(np.maximum(ref[1:], 1e-9))
    loud = db > np.nanmax(db) - SILENT_DB
    hits = (np.diff(db) >= HIT_DB) & loud[1:]
    return hits.sum() / max(loud.sum() / FPS, 1e-9)


def all_series(x, sr, configs, bands=BANDS):
    """Per-frame values of every (band, configuration) on samples x, and each band's RMS per frame."""
    bounds = frame_bounds(len(x), sr)
    usable = [(name, lo, hi) for name, lo, hi in bands if hi < sr / 2 * 0.98]
    vj_bands, keys = [], []
    for cname, config in configs.items():
        for name, lo, hi in usable:
            keys.append((name, cname))
            if config["proto"] != "ref":
                vj_bands.append(make_band(f"{name}__{cname}", lo, hi, config))
    values, ticks, hop, rate = vj_frame_values(x, sr, vj_bands, bounds)
    refs = {name: band_rms(x, sr, lo, hi, bounds) for name, lo, hi in usable}
    series = {}
    i = -1
    for name, cname in keys:
        proto = configs[cname]["proto"]
        i += proto != "ref"
        if proto == "ref":
            level = np.nan_to_num(refs[name])
            v = level / np.maximum(decaying_max(level, configs[cname]["agc_time"], FPS), 0.001)
        elif proto:
            tick_values = PROTOS[proto](ticks[i], configs[cname], rate)
            v = np.concatenate(([0.0], tick_values))[bounds // hop]
        else:
            v = values[i]
        series[(name, cname)] = v
    return series, refs, usable


def analyze_track(path, configs, args):
    """All metrics of one track: {(band, config): metrics}, {band: hits/s}, and data for plots."""
    x, sr = read_track(path, args.max_seconds, args.offset)
    series, refs, usable = all_series(x, sr, configs)
    results = {key: window_metrics(v, refs[key[0]]) for key, v in series.items()}
    hits = {name: hit_rate(ref) for name, ref in refs.items()}
    return results, hits, {"refs": refs, "series": series, "sr": sr, "bands": usable}


def steady(configs, sr=48000, seconds=12.0, settle=4.0):
    """Flicker on sustained sound, where the ideal variable is constant: for each band, a sine at 1.05 x
    its low edge (the slowest waveform ripple the band passes) and at its centre, and white noise.

    Returns {(signal, band, config): (mean |dv|, p90 - p10)} over the frames after `settle` seconds;
    for the noise, `ref` (the band RMS itself) shows how much a true energy follower must move.
    """
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    out = {}
    for signal_name in ("tone@low", "tone@centre", "noise"):
        for name, lo, hi in STEADY_BANDS:
            if signal_name == "noise":
                x = 0.1 * rng.standard_normal(len(t))
            else:
                f = 1.05 * lo if signal_name == "tone@low" else (lo + hi) / 2
                x = 0.5 * np.sin(2 * np.pi * f * t)
            series, _, _ = all_series(x.astype(np.float32), sr, configs, bands=[(name, lo, hi)])
            for (band, cname), v in series.items():
                v = v[int(settle * FPS) : -1]
                p10, p90 = np.percentile(v, [10, 90])
                out[(signal_name, band, cname)] = (np.abs(np.diff(v)).mean(), p90 - p10)
    return out


def steady_table(result, configs):
    """Markdown table of steady(): rows signal, columns bands, cells the flicker of each configuration."""
    names = [b[0] for b in STEADY_BANDS]
    lines = ["| signal | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for signal_name in ("tone@low", "tone@centre", "noise"):
        cells = [" / ".join(f"{result[(signal_name, n, c)][0]:.3f}" for c in configs) for n in names]
        lines.append(f"| {signal_name} flick | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def self_check(path, config):
    """Check vj_frame_values against per-frame advance_to calls on the first 20 s of a track."""
    x, sr = read_track(path, 20, 0.0)
    bands = [make_band(name, lo, hi, config) for name, lo, hi in BANDS if hi < sr / 2 * 0.98]
    bounds = frame_bounds(len(x), sr)[:-1]
    fast = vj_frame_values(x, sr, bands, bounds)[0]
    analyzer = AudioAnalyzer(ArraySource(x, sr), bands)
    slow = np.array([[analyzer.advance_to(i / FPS)[b.variable_name] for b in bands] for i in range(len(bounds))]).T
    err = np.abs(fast - slow).max()
    print(f"self-check on {path.name}: max |feed - advance_to| = {err:.3g} over {len(bounds)} frames")
    return err < 1e-9


# ---------------------------------------------------------------------------------------------------
# Reports.


def table(results, tracks, configs, metric, hits=None):
    """Markdown table: one row per track (plus the mean), one column per band, cells 'cfg1 / cfg2 ...'."""
    names = [b[0] for b in BANDS]
    lines = ["| track | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    means = {(n, c): [] for n in names for c in configs}
    for track in tracks:
        cells = []
        for n in names:
            vals = []
            for c in configs:
                m = results[track].get((n, c))
                vals.append("-" if m is None else f"{m[metric]:.2f}")
                if m is not None:
                    means[(n, c)].append(m[metric])
            cell = " / ".join(vals)
            if hits is not None and n in hits[track]:
                cell += f" ({hits[track][n]:.1f})"
            cells.append(cell)
        lines.append(f"| {track} | " + " | ".join(cells) + " |")
    cells = [" / ".join(f"{np.mean(means[(n, c)]):.2f}" if means[(n, c)] else "-" for c in configs) for n in names]
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results, tracks, configs, hits, dense_hits):
    """Per configuration: each metric averaged over all (track, band) cells, the dense and the sparse ones."""
    columns = (
        ("r", "all"),
        ("r", "dense"),
        ("r", "sparse"),
        ("r", "worst"),
        ("r_d", "all"),
        ("range", "all"),
        ("floor", "dense"),
        ("floor", "sparse"),
        ("flick", "dense"),
        ("flick", "sparse"),
    )
    lines = ["| config | " + " | ".join(f"{m} {g}" for m, g in columns) + " |", "| --- |" + " --- |" * len(columns)]
    groups = {
        "all": lambda h: True,
        "worst": lambda h: True,
        "dense": lambda h: h >= dense_hits,
        "sparse": lambda h: h < dense_hits,
    }
    for c in configs:
        cells = []
        for metric, group in columns:
            vals = [
                results[t][(n, c)][metric]
                for t in tracks
                for n, *_ in BANDS
                if results[t].get((n, c)) and groups[group](hits[t][n])
            ]
            cells.append(f"{(min(vals) if group == 'worst' else np.mean(vals)):.3f}" if vals else "-")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path, data, configs, band_names, start, seconds):
    """Band RMS (scaled to its max in view) and each configuration's variable over a few seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i0, i1 = int(start * FPS), int((start + seconds) * FPS)
    fig, axes = plt.subplots(len(band_names), 1, figsize=(12, 2.6 * len(band_names)), sharex=True, squeeze=False)
    t = np.arange(i0, i1) / FPS
    for ax, name in zip(axes[:, 0], band_names, strict=True):
        ref = data["refs"][name][i0:i1]
        ax.fill_between(t, 0, ref / np.nanmax(ref), color="0.8", step="pre", label="band RMS per frame (scaled)")
        for c in configs:
            ax.plot(t, data["series"][(name, c)][i0:i1], drawstyle="steps-pre", lw=1.3, label=c)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name)
        ax.legend(loc="upper right", fontsize=7, ncol=len(configs) + 1)
    axes[-1, 0].set_xlabel("s (30 fps frames)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder of audio files (searched recursively)")
    parser.add_argument(
        "--configs", default="old,auto,peak-auto,rms0.04,ref", help=f"comma-separated names from: {', '.join(CONFIGS)}"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="an extra configuration, e.g. 'mine=envelope=rms,release=fc:60:0.03:0.15' "
        "(the first '=' separates the name)",
    )
    parser.add_argument("--envelope", help="shortcut: one more configuration 'cli' with this envelope")
    parser.add_argument("--release", help="shortcut: ... with this release (seconds, auto, fc:K:LO:HI, ...)")
    parser.add_argument("--attack", help="shortcut: ... with this attack (s)")
    parser.add_argument("--max-seconds", type=float, default=0, help="analyse at most this much of each track")
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument(
        "--dense-hits",
        type=float,
        default=4.0,
        help="a track x band counts as dense from this many band onsets per second",
    )
    parser.add_argument("--csv", type=Path, help="write every metric per track x band x config")
    parser.add_argument("--metrics", default="r,flick", help="per-track tables to print: r, r_d, range, floor, flick")
    parser.add_argument("--plot", type=Path, help="PNG of a few seconds of one track")
    parser.add_argument("--plot-track", help="substring of the track's file name (default: the first)")
    parser.add_argument("--plot-start", type=float, default=30.0)
    parser.add_argument("--plot-seconds", type=float, default=4.0)
    parser.add_argument("--plot-bands", default="hats,air,bass,sub")
    parser.add_argument("--self-check", action="store_true", help="check the fast frame indexing first")
    parser.add_argument(
        "--steady",
        action="store_true",
        help="also measure flicker on steady synthetic tones and noise (ideal: 0 for tones)",
    )
    args = parser.parse_args()

    names = list(filter(None, args.configs.split(",")))
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration {', '.join(unknown)} (known: {', '.join(CONFIGS)})")
    specs = {name: CONFIGS[name] for name in names}
    for extra in args.config:
        name, _, spec = extra.partition("=")
        specs[name] = spec
    if args.envelope or args.release or args.attack:
        specs["cli"] = ",".join(
            f"{k}={v}"
            for k, v in (("envelope", args.envelope), ("release", args.release), ("attack", args.attack))
            if v
        )
    configs = {name: parse_config(spec) for name, spec in specs.items()}

    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in AUDIO_EXT and p.is_file())
    if not files:
        sys.exit(f"no audio files under {args.folder}")
    if args.self_check and not self_check(files[0], configs[next(iter(configs))]):
        sys.exit("self-check failed: frame indexing differs from advance_to")

    print("configurations:")
    for name, config in configs.items():
        print(f"  {name}: {specs[name] or '(old defaults)'}: {describe(config)}")
    results, hits, plot_data = {}, {}, None
    stems = [p.stem for p in files]
    for path in files:
        start = time.perf_counter()
        track = path.stem if stems.count(path.stem) == 1 else str(path.relative_to(args.folder).with_suffix(""))
        results[track], hits[track], data = analyze_track(path, configs, args)
        if args.plot and plot_data is None and (not args.plot_track or args.plot_track in path.name):
            plot_data = data
        print(f"  {track}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    tracks = list(results)
    cnames = list(configs)
    print(f"\ncells: {' / '.join(cnames)}" + " (band onsets per second in parentheses)")
    for metric in filter(None, args.metrics.split(",")):
        print(f"\n### {metric}\n")
        print(table(results, tracks, cnames, metric, hits if metric == "r" else None))
    print(f"\n### summary (dense: >= {args.dense_hits:g} band onsets/s)\n")
    print(summary(results, tracks, cnames, hits, args.dense_hits))
    if args.steady:
        print("\n### steady sound: mean |v[i] - v[i-1]| (ideal 0 for tones; `ref` for noise is the band RMS's own)\n")
        print(steady_table(steady(configs), cnames))
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("track,band,config,hits_per_s,r,r_d,range,floor,flick,windows,of\n")
            for t in tracks:
                for (n, c), m in results[t].items():
                    if m:
                        f.write(
                            f"{t},{n},{c},{hits[t][n]:.3f},{m['r']:.4f},{m['r_d']:.4f},{m['range']:.4f},"
                            f"{m['floor']:.4f},{m['flick']:.4f},{m['windows']},{m['of']}\n"
                        )
        print(f"wrote {args.csv}")
    if args.plot and plot_data is None:
        print(f"no track matches --plot-track {args.plot_track}: no plot")
    if args.plot and plot_data is not None:
        plot(
            args.plot,
            plot_data,
            cnames,
            [b for b in args.plot_bands.split(",") if b in plot_data["refs"]],
            args.plot_start,
            args.plot_seconds,
        )


if __name__ == "__main__":
    main()
