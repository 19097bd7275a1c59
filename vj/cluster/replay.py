"""`vj replay DIR --ray [ADDRESS]`: a recorded show re-rendered on a Ray cluster's workers, in segments.

With `--ray` a replay is always a re-render (frame i at show time i/fps, at the recorded quality or the one given):
the live frames' bit-identical replay (and `--verify`) needs every frame in order on one machine. The segments,
workers and stitching are a render's (vj.cluster.segmented); the MP4 gets the recorded audio and the blackouts.
"""

import sys
import time

from vj.cluster.connect import ClusterError, connect, describe, disconnect, ray_module
from vj.cluster.segmented import lay_out, run_segments
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
        options, workers, segments, threads = lay_out(args, resources, first.image_model, count, boundaries, "replay")
        arguments = (str(args.folder), overrides, args.device, args.dtype, args.compile, threads)
        print(
            f"vj replay: re-rendering {count} frames in {len(segments)} segments (warm-up {args.warmup} frames) on "
            f"{workers} workers of {describe(args.ray)}",
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
