"""A render's timeline cut into segments that render apart: each segment but the first starts `warmup` frames early.

Every frame of vj's img2img feedback loop starts from the frame before it, so a segment cannot begin cold where the
serial render is mid-flow. It begins `warmup` frames before its first kept frame instead, from a fresh engine, and
those frames are thrown away: img2img forgets its starting picture geometrically (each frame keeps only what the
noise at `strength` leaves of the one before), so after the warm-up the segment's frames are close to the serial
render's. Cuts are moved to scene boundaries when one is near (a new scene changes the picture anyway). Pure
arithmetic: no torch, no Ray.
"""

from dataclasses import dataclass

DEFAULT_WARMUP = 24  # frames; see docs/benchmarks.md, "Segment seams" (the tiny model needs 1; real models more)
PIXEL_MODELS_NOTE = (
    "pytti's pixel models carry their palette and optimizer from frame to frame and a fresh one never catches up "
    "(measured: docs/benchmarks.md, Segment seams): rendered as one segment"
)


def segment_count(image_model, wanted):
    """How many segments a render of `image_model` is cut into when `wanted` are asked for: one for the pixel
    models, whose state no warm-up rebuilds."""
    return wanted if image_model == "diffusion" else 1


@dataclass(frozen=True)
class Segment:
    """Frames `first` .. `end - 1` of a render, computed from frame `first - warmup` on (the warm-up is discarded)."""

    index: int
    first: int
    end: int
    warmup: int = 0

    @property
    def start(self):
        """The first frame rendered (kept or not)."""
        return self.first - self.warmup

    @property
    def frames(self):
        """How many frames it keeps."""
        return self.end - self.first


def plan_segments(count, segments, warmup=DEFAULT_WARMUP, boundaries=()):
    """`segments` Segments covering frames 0..count-1 in order, each with at most `warmup` warm-up frames (the first
    none). A cut at an even split moves to the nearest frame in `boundaries` (scene starts) within a quarter of a
    segment's length. Fewer segments when there are fewer frames than segments."""
    if count < 1 or segments < 1:
        raise ValueError(f"a render of {count} frames in {segments} segments")
    segments = min(segments, count)
    length = count / segments
    cuts = []
    for k in range(1, segments):
        even = round(k * length)
        near = [b for b in boundaries if abs(b - even) <= length / 4 and 0 < b < count]
        # cuts stay in order: evens are at least `length` - 1 apart and a cut moves by at most `length` / 4
        cuts.append(min(near, key=lambda b: (abs(b - even), b)) if near else even)
    edges = [0, *cuts, count]
    spans = [(first, end) for first, end in zip(edges, edges[1:]) if end > first]
    return [Segment(i, first, end, min(warmup, first)) for i, (first, end) in enumerate(spans)]


def scene_starts(durations, fps, start=0.0):
    """The output frames (of a render starting at show time `start`) at which a scene starts: the scene boundaries of
    a render's timeline (`durations` in seconds, repeating as Timeline does not: only the first pass counts)."""
    frames, t = [], 0.0
    for duration in durations:
        t += duration
        frame = round((t - start) * fps)
        if frame > 0:
            frames.append(frame)
    return frames
