"""A segmented job on the cluster: the segments handed to the workers, their frames written in order as they arrive.

Shared by `vj render --ray` and `vj replay --ray`: a worker's `render(segment, chunk)` yields (frames, blacks) chunks,
`n` uint8 frames and whether each is shown black; `run_segments` writes them through the command's `emit(index, rgb,
black)` in frame order, the segment whose turn it is at once and later ones from the driver's disk, with one progress
bar for the whole cluster. A lost worker's segment runs again; Ctrl-C stops the cluster's work.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vj.cluster.connect import ClusterError, worker_resources, worker_threads
from vj.cluster.pool import LOST, Pool
from vj.cluster.segments import PIXEL_MODELS_NOTE, plan_segments, segment_count

CHUNK = 8  # frames per message from a worker


class Stitcher:
    """Writes the segments' frames in order through `emit(index, rgb, black)`: the segment whose turn it is at once,
    later ones from the disk (`spool`)."""

    def __init__(self, segments, emit, spool):
        self.segments = segments
        self.emit = emit
        self.spool = spool
        self.turn = 0  # the segment being written
        self.chunks = {s.index: [] for s in segments}  # spooled chunk files, per segment
        self.received = {s.index: 0 for s in segments}  # frames received, per segment
        self.skip = 0  # frames of the segment being written that are already in the file (it ran again)
        self.done = set()
        self.written = 0

    def add(self, segment, chunk):
        frames, blacks = chunk
        self.received[segment.index] += len(frames)
        if segment.index == self.turn and self.skip:  # a re-run gives the same frames: those written stay
            kept = max(0, len(frames) - self.skip)
            self.skip -= len(frames) - kept
            frames, blacks = frames[len(frames) - kept :], blacks[len(blacks) - kept :]
        if segment.index == self.turn:
            self._write(frames, blacks)
        else:
            path = self.spool / f"{segment.index:05d}_{len(self.chunks[segment.index]):06d}.npz"
            np.savez(path, frames=frames, blacks=blacks)
            self.chunks[segment.index].append(path)
        if self.received[segment.index] == segment.frames:
            self.done.add(segment.index)
        self._advance()

    def drop(self, segment):
        """A lost segment's frames so far: gone (it runs again; of the segment being written, the frames already in
        the file are skipped when they come again: a segment renders the same frames every time). Returns how many
        frames it had sent."""
        if segment.index == self.turn:
            self.skip = self.received[segment.index]
        for path in self.chunks[segment.index]:
            path.unlink()
        self.chunks[segment.index].clear()
        lost, self.received[segment.index] = self.received[segment.index], 0
        return lost

    def _advance(self):
        while self.turn in self.done:
            self.turn += 1
            if self.turn == len(self.segments):
                return
            for path in self.chunks[self.turn]:
                with np.load(path) as saved:
                    self._write(saved["frames"], saved["blacks"])
                path.unlink()
            self.chunks[self.turn].clear()

    def _write(self, frames, blacks):
        for rgb, black in zip(frames, blacks):
            self.emit(self.written, rgb, bool(black))
            self.written += 1


def lay_out(args, resources, image_model, count, boundaries, command):
    """(what a worker asks of the cluster, how many workers, the segments, torch threads per worker) of a job of
    `count` frames from `--segments`, `--warmup`, `--device` and the cluster's `resources`; pixel models get one
    segment, with a note on stderr from `vj COMMAND`."""
    options, capacity = worker_resources(args.device, resources)
    wanted = segment_count(image_model, args.segments or capacity)
    if wanted == 1 and (args.segments or capacity) > 1:
        print(f"vj {command}: note: {PIXEL_MODELS_NOTE}", file=sys.stderr)
    segments = plan_segments(count, wanted, args.warmup, boundaries)
    workers = min(capacity, len(segments))
    return options, workers, segments, worker_threads(args.ray, options, workers)


def run_segments(ray, worker, arguments, options, workers, segments, count, emit, desc):
    """Render `segments` (count frames in all) on `workers` Ray actors of class `worker` built with `arguments`,
    writing every frame through `emit` in order. Returns the frames written; KeyboardInterrupt stops the workers
    (the frames written so far stay)."""
    progress = tqdm(total=count, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True)

    def lost(segment, times):
        progress.write(f"vj: a worker was lost; segment {segment.index + 1} runs again (time {times})", file=sys.stderr)

    spool = Path(tempfile.mkdtemp(prefix="vj-segments-"))
    stitcher = Stitcher(segments, emit, spool)
    pool = None
    try:
        pool = Pool(ray, worker, arguments, options, workers, lambda w, s: w.render.remote(s, CHUNK), lost)
        counts = {c for _, c, _ in pool.facts}
        if counts != {count}:
            raise ClusterError(f"the workers plan {sorted(counts)} frames, the driver {count}: not the same job")
        for segment, chunk in pool.results(segments):
            if chunk is LOST:
                progress.update(-stitcher.drop(segment))
                continue
            stitcher.add(segment, chunk)
            progress.update(len(chunk[0]))
    finally:
        if pool is not None:
            pool.close()
        progress.close()
        shutil.rmtree(spool, ignore_errors=True)
    return stitcher.written
