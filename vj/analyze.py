"""`vj analyze`: per-frame values of every audio variable to CSV, and a picture for tuning filters."""

import csv

import numpy as np

from vj.audio import AudioAnalyzer, AudioError, FileSource


def frame_values(source, bands, fps, start, duration):
    """(frame numbers, times, {name: values}) for frames at start + i/fps, analysed causally from 0."""
    analyzer = AudioAnalyzer(source, bands)
    first = int(round(start * fps))
    count = int(round(duration * fps))
    frames = np.arange(first, first + count)
    times = frames / fps
    table = {name: np.empty(count) for name in analyzer.names}
    for i, t in enumerate(times):
        for name, value in analyzer.advance_to(t).items():
            table[name][i] = value
    return frames, times, table


def write_csv(path, frames, times, table):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "t", *table])
        for i, (frame, t) in enumerate(zip(frames, times)):
            writer.writerow([int(frame), f"{t:.6f}", *(f"{table[n][i]:.6f}" for n in table)])


def plot(path, audio_path, offset, times, table, start, duration):
    """Band levels over time above the waveform of the same span."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile

    with soundfile.SoundFile(str(audio_path)) as f:
        sr = f.samplerate
        f.seek(min(f.frames, int(round((offset + start) * sr))))
        wave = f.read(int(round(duration * sr)), dtype="float32", always_2d=True).mean(axis=1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=[2, 1])
    for name, values in table.items():
        top.plot(times, values, label=name, linewidth=1)
    top.set_ylabel("value")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bins = max(1, len(wave) // 4000)
    usable = len(wave) // bins * bins
    if usable:
        chunks = wave[:usable].reshape(-1, bins)
        t = start + (np.arange(len(chunks)) * bins) / sr
        bottom.fill_between(t, chunks.min(axis=1), chunks.max(axis=1), linewidth=0)
    bottom.set_ylabel("waveform")
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(audio_path, preset, fps, start, duration, out_csv, plot_path=None):
    if not preset.input_audio_filters:
        raise AudioError(f"preset '{preset.path}' has no input_audio_filters: nothing to analyse")
    source = FileSource(audio_path, preset.input_audio_offset)
    if duration is None:
        duration = max(0.0, source.duration - start)
    frames, times, table = frame_values(source, preset.input_audio_filters, fps, start, duration)
    write_csv(out_csv, frames, times, table)
    if plot_path:
        plot(plot_path, audio_path, preset.input_audio_offset, times, table, start, duration)
    return len(frames)
