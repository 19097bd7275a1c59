"""`vj analyze`: per-frame values of every audio variable to CSV, and a picture for tuning filters."""

import csv
from pathlib import Path

import numpy as np

from vj.audio import AudioAnalyzer, FileSource
from vj.config.musical import HIT_SUFFIX, MUSICAL_VARIABLES
from vj.errors import AudioError, VjError


class SpanError(VjError):
    """A --start (and --duration) that leaves no frame to make; the message says what it was measured against."""


def audio_overrides(audio):
    """The preset overrides for a track named on the command line (--audio, analyze's AUDIO): it replaces the
    preset's input_audio, so a shared preset whose track is missing here loads, and its filters are checked
    against this track. Absolute, since the preset resolves relative paths against its own folder. A missing track
    is refused here, as the command line's (not as the preset's)."""
    if not audio:
        return {}
    path = Path(audio).expanduser().absolute()
    if not path.is_file():
        raise AudioError(f"audio file '{audio}' not found")
    return {"input_audio": str(path)}


def track_end(source, path, offset):
    """The end that --start counts toward when a track sets the length: (seconds, what), for `frame_count`."""
    after = f" after input_audio_offset {offset:g} s" if offset else ""
    return source.duration, f"'{path}' ({source.duration:.1f} s long{after})"


def frame_count(fps, start, duration, end):
    """How many frames at start + i/fps a run makes: `duration` seconds' worth or, when that is None, up to `end`,
    a (seconds, what) pair like `track_end`'s; SpanError when that is not one frame."""
    if duration is None:
        seconds, what = end
        if start >= seconds:
            raise SpanError(f"--start {start:g} s is past the end of {what}")
        duration = seconds - start
        span = f"--start {start:g} s leaves {duration:.3f} s of {what}, which is"
    else:
        span = f"--duration {duration:g} s is"
    count = int(round(duration * fps))
    if count < 1:
        raise SpanError(f"{span} less than one frame at {fps:g} fps")
    return count


def frame_values(analyzer, fps, start, count):
    """(frame numbers, times, {name: values}) for `count` frames at start + i/fps, analysed causally from 0."""
    first = int(round(start * fps))
    frames = np.arange(first, first + count)
    times = frames / fps
    values = analyzer.values_at(times)
    return frames, times, dict(zip(analyzer.names, values))


def write_csv(path, frames, times, table):
    """One row per frame: frame number, time and every variable, with 6 decimals."""
    row = "%d,%.6f" + ",%.6f" * len(table) + "\n"
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(["frame", "t", *table])
        f.writelines(row % (int(frame), *values) for frame, *values in zip(frames, times, *table.values()))


def _event_times(times, values):
    """Frame times where a decaying pulse rises again (a new event), or a running count goes up."""
    return times[np.diff(values, prepend=0.0) > 0]


def plot(path, audio_path, offset, times, table, start, duration):
    """Band levels over time above the waveform of the same span, with onsets and beats marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile

    with soundfile.SoundFile(str(audio_path)) as f:
        sr = f.samplerate
        f.seek(min(f.frames, int(round((offset + start) * sr))))
        wave = f.read(int(round(duration * sr)), dtype="float32", always_2d=True).mean(axis=1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=[2, 1])
    bands = [n for n in table if not n.endswith(HIT_SUFFIX) and n not in MUSICAL_VARIABLES]
    colours = {}
    for name in bands:
        colours[name] = top.plot(times, table[name], label=name, linewidth=1)[0].get_color()
    top.set_ylabel("value")
    top.grid(alpha=0.3)
    bins = max(1, len(wave) // 4000)
    usable = len(wave) // bins * bins
    if usable:
        chunks = wave[:usable].reshape(-1, bins)
        t = start + (np.arange(len(chunks)) * bins) / sr
        bottom.fill_between(t, chunks.min(axis=1), chunks.max(axis=1), linewidth=0, color="0.6")
    for name in table:
        if name.endswith(HIT_SUFFIX):
            band = name[: -len(HIT_SUFFIX)]
            hits = _event_times(times, table[name])
            bottom.vlines(
                hits,
                0.0,
                1.0,
                transform=bottom.get_xaxis_transform(),
                colors=colours.get(band),
                linewidth=0.8,
                label=f"{name} onsets",
            )
    beats = _event_times(times, table["beat_count"])
    for axis in (top, bottom):
        axis.vlines(
            beats,
            0.0,
            1.0,
            transform=axis.get_xaxis_transform(),
            colors="k",
            linestyles=":",
            linewidth=0.8,
            label="beats" if axis is top else None,
        )
    bpm = table["bpm"][table["bpm"] > 0]
    top.set_title(f"tempo {np.median(bpm):.1f} BPM (median while locked)" if len(bpm) else "no beat locked")
    top.legend(loc="upper right", fontsize="small")
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(loc="upper right", fontsize="small")
    bottom.set_ylabel("waveform")
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(audio_path, preset, fps, start, duration, out_csv, plot_path=None):
    source = FileSource(audio_path, preset.input_audio_offset)
    try:
        count = frame_count(fps, start, duration, track_end(source, audio_path, preset.input_audio_offset))
        frames, times, table = frame_values(AudioAnalyzer.for_preset(source, preset), fps, start, count)
    finally:
        source.close()
    write_csv(out_csv, frames, times, table)
    if plot_path:
        plot(plot_path, audio_path, preset.input_audio_offset, times, table, start, count / fps)
    return len(frames), list(table)
