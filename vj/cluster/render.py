"""`vj render PRESET --ray [ADDRESS]`: the render's segments on a Ray cluster's workers, stitched in order into one
MP4 with the track.

The driver plans the segments (vj.cluster.segments), starts one worker per GPU (or per CPU without GPUs) that loads
the models once, and hands each free worker the next segment. Frames stream back in chunks; the segment whose turn
it is goes straight into the MP4 (and `--frames` PNGs), later ones wait on the driver's disk. A worker lost mid-way
re-runs only its segment, on a worker started in its place; Ctrl-C stops the cluster's work and leaves a playable
MP4 of the frames written so far. The frames of the first segment are the serial render's; the others differ from
it only near their start (their warm-up; docs/benchmarks.md measures how much).
"""

import sys
import time
from pathlib import Path

from vj.cluster.connect import ClusterError, connect, describe, disconnect, ray_module
from vj.cluster.segmented import lay_out, run_segments
from vj.cluster.segments import scene_starts
from vj.cluster.workers import RenderJob, SegmentRenderer
from vj.commands.render import RenderError, render_preset
from vj.video.outputs.mp4 import Mp4Writer, read_track

JOB_KEYS = ("preset", "audio", "model", "vae", "fps", "width", "height", "seed", "strict", "start", "duration")
ENGINE_KEYS = ("device", "dtype", "compile")


def main(args):
    ray = ray_module()  # before anything loads: without Ray, one line
    preset, track, duration, count = render_preset(args)
    for warning in preset.warnings:
        print(f"vj render: warning: {warning}", file=sys.stderr)
    values = {key: getattr(args, key) for key in JOB_KEYS + ENGINE_KEYS}
    values["seed"] = preset.seed  # a seed drawn from ${now} once, here, for every worker
    resources = connect(args.ray, args.workers)
    try:
        boundaries = scene_starts(preset.scene_durations(), preset.frames_per_second, args.start)
        layout = lay_out(args, resources, preset.image_model, count, boundaries, "render")
        options, workers, segments, threads = layout
        job = RenderJob(values, threads)
        print(
            f"vj render: {count} frames in {len(segments)} segments (warm-up {args.warmup} frames) on {workers} "
            f"workers of {describe(args.ray)}",
            file=sys.stderr,
        )
        audio = read_track(track, preset.input_audio_offset + args.start, duration) if track else None
        return _render(ray, job, options, workers, segments, count, preset, audio, args)
    finally:
        disconnect()


def _render(ray, job, options, workers, segments, count, preset, audio, args):
    out = Path(args.output)
    fps = preset.frames_per_second
    frames_dir = Path(args.frames) if args.frames else None
    if frames_dir:
        frames_dir.mkdir(parents=True, exist_ok=True)
    writer = Mp4Writer(out, fps, preset.width, preset.height, audio)

    def emit(index, rgb, black):
        writer.write(rgb)
        if frames_dir is not None:
            from PIL import Image

            Image.fromarray(rgb).save(frames_dir / f"frame_{index:06d}.png")

    started = time.perf_counter()
    try:
        try:
            run_segments(ray, SegmentRenderer, (job,), options, workers, segments, count, emit, "render (cluster)")
        finally:
            writer.close()
    except KeyboardInterrupt:
        print(
            f"vj render: interrupted; the cluster's work stopped; {writer.frames} of {count} frames "
            f"({writer.frames / fps:.2f} s) are in '{out}', which plays",
            file=sys.stderr,
        )
        return 130
    except ClusterError:
        raise
    except Exception as exc:
        raise RenderError(f"{exc} (the {writer.frames} frames written before it are in '{out}', which plays)") from exc
    took = time.perf_counter() - started
    print(
        f"wrote {writer.frames} frames ({writer.frames / fps:.2f} s at {fps:g} fps) to '{out}' in {took:.1f} s "
        f"({writer.frames / took:.1f} frames/s on the cluster, model loading included)",
        file=sys.stderr,
    )
    return 0
