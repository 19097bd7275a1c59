"""`vj replay DIR --ray [ADDRESS]`: a recorded show re-rendered on a Ray cluster's workers, in segments.

With `--ray` a replay is always a re-render (frame i at show time i/fps, at the recorded quality or the one given):
the live frames' bit-identical replay (and `--verify`) needs every frame in order on one machine. The segments,
workers and stitching are a render's (vj.cluster.segmented); the MP4 gets the recorded audio and the blackouts.
"""

import os
import sys
import time

from vj.cluster.connect import LOCAL, ClusterError, connect, disconnect, ray_module, worker_resources
from vj.cluster.segmented import run_segments
from vj.cluster.segments import PIXEL_MODELS_NOTE, plan_segments, segment_count
from vj.cluster.workers import ReplayRenderer
from vj.commands.render import RenderError
from vj.commands.replay import _Writer, open_recording, quality_overrides, rerender_count
from vj.show.recordings.layout import RecordingError


def main(args):
    ray = ray_module()
    if args.verify:
        raise RecordingError("--verify compares the live frames one by one on this machine: leave out --ray")
    overrides = quality_overrides(args)
    recording, presets = open_recording(args.folder, overrides)
    first = presets[0]
    fps = first.frames_per_second
    count = rerender_count(recording, presets)
    boundaries = sorted({round(e["t"] * fps) for e in recording.kind("scene") if "t" in e})
    resources = connect(args.ray, args.workers)
    try:
        options, capacity = worker_resources(args.device, resources)
        wanted = segment_count(first.image_model, args.segments or capacity)
        if wanted == 1 and (args.segments or capacity) > 1:
            print(f"vj replay: note: {PIXEL_MODELS_NOTE}", file=sys.stderr)
        segments = plan_segments(count, wanted, args.warmup, boundaries)
        workers = min(capacity, len(segments))
        local_cpu = args.ray == LOCAL and "num_gpus" not in options
        threads = max(1, (os.cpu_count() or 1) // workers) if local_cpu else 0
        arguments = (str(args.folder), overrides, args.device, args.dtype, args.compile, threads)
        print(
            f"vj replay: re-rendering {count} frames in {len(segments)} segments (warm-up {args.warmup} frames) on "
            f"{workers} workers of {'a local Ray instance' if args.ray == LOCAL else args.ray}",
            file=sys.stderr,
        )
        writer = _Writer(args, recording, fps, (first.width, first.height), count)

        def emit(index, rgb, black):
            writer.png(rgb, index)
            writer.video(rgb, black)

        started = time.perf_counter()
        try:
            try:
                desc = "re-render (cluster)"
                run_segments(ray, ReplayRenderer, arguments, options, workers, segments, count, emit, desc)
            finally:
                writer.close()
        except KeyboardInterrupt:
            where = f"are in '{writer.out}', which plays" if writer.out is not None else "were rendered"
            print(
                f"vj replay: interrupted; the cluster's work stopped; {writer.written} of {count} frames {where}",
                file=sys.stderr,
            )
            return 130
        except (ClusterError, RecordingError):
            raise
        except Exception as exc:
            raise RenderError(f"{exc} (the {writer.written} frames written before it are kept)") from exc
    finally:
        disconnect()
    target = f" to '{writer.out}'" if writer.out is not None else ""
    print(
        f"re-rendered {count} frames ({count / fps:.2f} s at {fps:g} fps, {first.width}x{first.height}){target} in "
        f"{time.perf_counter() - started:.1f} s on the cluster",
        file=sys.stderr,
    )
    return 0
