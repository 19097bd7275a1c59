"""Segment seams of distributed renders: how many warm-up frames K make a segment's frames match the serial render.

    .venv/bin/python benchmarks/bench_segments.py > segments.json                  # the default run (64x64, CPU)
    .venv/bin/python benchmarks/bench_segments.py --presets demo,live --warmups 0,1,2,4,8 --seams 3
    .venv/bin/python benchmarks/bench_segments.py --presets palette --seams 1 --budget-s 0   # every K, however slow
    .venv/bin/python benchmarks/bench_segments.py --model stabilityai/sd-turbo --device cuda --dtype float16 \
        --size 256 --budget-s 0                                                   # real weights, where they load

A distributed render (vj/cluster/segments.py) renders segment [s, e) on its own worker from a fresh engine started
K frames early, at s - K: those K frames (the first a txt2img frame, or img2img of the init image, as a render's
frame 0 is) are thrown away, and img2img's feedback is meant to have forgotten the cold start by frame s. This
measures, for each preset (`--model`, `--size` x `--size`, the track --audio when the preset has filters but no
track, a synthetic video for Video Source), and each seam s:

- the serial render (`vj render`'s loop: one Director, one engine, frames 0, 1, ... from the track's analysis);
- for each K in --warmups a segment: a NEW Director and engine from the same ShowSession, the same `requests(...)`
  generator from frame 0 (so the audio analysis and the Director advance as in the serial render; every segment of
  a preset shares that second Director, which only computes numbers), `engine.render` from frame s - K on;
- `diff` at frames s .. s + --frames-after: the mean |segment - serial| per pixel and channel, 0..255 (uint8);
- `normal`: the median of the serial render's mean |frame[i] - frame[i-1]| over i in s-8 .. s+8 (--window).

A seam is invisible for K when max(diff over s .. s+M) <= max(normal, --floor) (the floor, 0.05 levels, only
matters where the serial picture stands still), strict when <= max(0.5 * normal, --floor). Per preset:
`min_warmup` (and `_strict`): the smallest tested K from which on (that K and every larger one tested) every seam
is invisible; null when none. `decay_per_frame`: exp of the least-squares slope of log(diff at s) over the K
with diff at s > 0.005 (below: uint8 rounding), to compare with 1 - strength (img2img keeps about that much of
its input per frame).

Seams (--seams N): chosen among the scene start (where plan_segments cuts), the middle of the first scene and the
middle of the transition, else spread evenly, each >= max K (so every K fits) and within the render and
--max-frame. --budget-s caps each preset's segment renders: after a few serial frames give the seconds per frame,
seams are dropped (least important first, down to one), then K values (keeping 0, the largest and a spread), until
sum over seams and K of (K + M + 1) frames fits (0: no cap). What ran is reported (`warmups`, `seams`). A K
larger than the seam (--seam-frames) is not run: plan_segments starts that segment at frame 0, as the serial render.

A fresh engine from frame 0 is checked to reproduce the serial frames bit for bit (`check_max_diff`, 0).
torch runs --threads threads (1: on a 2-core CPU the tiny model's small ops run several times faster than on 2).
Prints one JSON object; progress goes to stderr.
"""

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vj.commands.analyze import audio_overrides  # noqa: E402
from vj.commands.render import plan, requests  # noqa: E402
from vj.config.loading import load_preset  # noqa: E402
from vj.show.session import ShowSession  # noqa: E402
from vj.show.timeline import Timeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS = "demo,live,pytti_audio_example,everything,palette,video_source,controlnet"
FIT_FLOOR = 0.005  # levels: diffs below it are uint8 rounding (a few pixels one level apart), left out of decay fits
PROBE = 4  # serial frames rendered before the plan is fitted to --budget-s (the first, txt2img, is not timed)


def log(message):
    print(f"bench_segments: {message}", file=sys.stderr, flush=True)


def preset_path(name):
    """A preset name (demo) or path (presets/demo.yaml) as a path."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else ROOT / "presets" / f"{name}.yaml"


def synthetic_video(path, fps=24, seconds=8.0, size=64):
    """A small MP4 for Video Source presets: a drifting gradient with a moving disc, and a cut to other colours
    halfway (a new shot, which the Director sends in whole)."""
    from vj.video.outputs.mp4 import Mp4Writer

    writer = Mp4Writer(path, fps, size, size)
    y, x = np.mgrid[0:size, 0:size] / size
    count = int(round(seconds * fps))
    for i in range(count):
        t = i / fps
        cut = i >= count // 2
        cx, cy = 0.5 + 0.3 * math.cos(t), 0.5 + 0.3 * math.sin(t)
        disc = ((x - cx) ** 2 + (y - cy) ** 2 < 0.03).astype(float)
        r = (x + 0.1 * t) % 1.0
        g = y if not cut else 1.0 - y
        b = disc if not cut else 1.0 - disc
        writer.write((np.stack([r, g, b], axis=-1) * 255).astype(np.uint8))
    writer.close()
    return path


def load(name, args, video):
    """The preset at the benchmark's size and model, with --audio when it has filters but no (readable) track and
    the video when it is a Video Source preset without one; (preset, notes) or (None, why it is skipped)."""
    path = preset_path(name)
    overrides = {"model": args.model, "width": args.size, "height": args.size}
    notes = []
    preset = load_preset(path, overrides)
    more = {}
    if preset.input_audio_filters and (preset.input_audio is None or preset.audio_problem):
        more.update(audio_overrides(args.audio))
        notes.append(f"track {args.audio} (the preset names none)")
    if preset.animation_mode == "Video Source" and not preset.video_path:
        if video is None:
            return None, "Video Source without video_path (--video none)"
        more["video_path"] = str(video)
        notes.append(f"video {video}")
    if more:
        preset = load_preset(path, {**overrides, **more})
    return preset, notes


def scene_starts(preset):
    """The frames at which scenes 1, 2, ... start (their transitions begin there), in the render's timeline."""
    fps, t, starts = preset.frames_per_second, 0.0, []
    for duration in preset.scene_durations()[:-1]:
        t += duration
        starts.append(int(round(t * fps)))
    return starts


def where(preset, frame):
    """Where `frame` is in the render's timeline, in words: in a transition (its mix), or so many frames into a
    scene (and before the next scene's start)."""
    fps = preset.frames_per_second
    position = Timeline(preset.scene_durations(), preset.transition_time).at(frame / fps)
    if position.previous is not None:
        return f"transition {position.previous}->{position.scene}, mix {position.mix:.2f}"
    starts = [0, *scene_starts(preset)]
    into = frame - starts[position.scene]
    after = [b - frame for b in starts if b > frame]
    return f"scene {position.scene}, {into} frames in" + (f", {after[0]} before the next" if after else "")


def candidate_seams(preset, count, lowest, highest, n):
    """Up to `n` seams in [lowest, highest], most important first: the first scene start inside (where
    plan_segments cuts), the middle of the first scene, the middle of that transition; then evenly spread.
    Each (frame, what)."""
    fps = preset.frames_per_second
    chosen = []

    def add(frame, what):
        if lowest <= frame <= highest and all(abs(frame - f) > 2 for f, _ in chosen):
            chosen.append((frame, what))

    inside = [b for b in scene_starts(preset) if lowest <= b <= highest]
    first_end = (scene_starts(preset) or [count])[0]
    if inside:
        b = inside[0]
        add(b, "scene start")
        add(first_end // 2, "mid-scene")
        add(b + int(round(preset.transition_time * fps / 2)), "mid-transition")
    else:
        add(max(lowest, first_end // 2), "mid-scene")
    for k in range(1, 2 * n + 2):  # evenly spread fill-ins
        if len(chosen) >= n:
            break
        add(lowest + (highest - lowest) * k // (n + 1), "mid-scene" if not inside else "spread")
    return chosen[:n]


def bisection_order(values):
    """`values` (sorted) most telling first: both ends, then the middle, then the middles of each half, ..."""
    order, spans = [0, len(values) - 1], [(0, len(values) - 1)]
    while spans:
        lo, hi = spans.pop(0)
        if hi - lo > 1:
            mid = (lo + hi) // 2
            order.append(mid)
            spans += [(lo, mid), (mid, hi)]
    return [values[i] for i in dict.fromkeys(order)]


def fit_budget(seams, warmups, after, seconds_per_frame, budget):
    """(seams, warmups) cut down until their segment frames' cost fits `budget` seconds: seams dropped from the end
    (least important) down to one, then K values in reverse `bisection_order` (0 and the largest stay)."""
    if budget <= 0:
        return seams, warmups

    def cost(s, w):
        return seconds_per_frame * len(s) * sum(k + after + 1 for k in w)

    seams, order = list(seams), bisection_order(sorted(warmups))
    while len(seams) > 1 and cost(seams, order) > budget:
        seams.pop()
    while len(order) > 2 and cost(seams, order) > budget:
        order.pop()
    return seams, sorted(order)


def mad(a, b):
    """Mean absolute difference of two uint8 frames, in levels of 0..255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@dataclass
class Run:
    """One segment: rendered from frame `seam - warmup` to `end`, compared from `seam` on."""

    seam: int
    warmup: int
    end: int
    engine: object = None
    diffs: list = field(default_factory=list)

    @property
    def start(self):
        return self.seam - self.warmup


def segment_pass(session, preset, track, runs, last, serial):
    """Render every run from its start with its own fresh engine, all fed by one new Director's requests from frame
    0 to `last`; fills each run's diffs against `serial`. Returns the frames rendered."""
    director = session.director()
    rendered = 0
    for i, request in enumerate(requests(preset, director, track, 0.0, last + 1)):
        for run in runs:
            if run.start == i:
                run.engine = session.engine()
            if run.engine is None:
                continue
            rgb = run.engine.render(request)
            rendered += 1
            if i >= run.seam:
                run.diffs.append(mad(rgb, serial[i]))
            if i >= run.end:
                run.engine = None
    return rendered


def decay(warmups, at_seam, floor):
    """(diff at the seam per frame of warm-up, as exp of the slope of log diff over K, fitted where diff > floor;
    how many K it used). With one K above the floor: the bound from it to the next K (diff taken as the floor)."""
    points = [(k, d) for k, d in zip(warmups, at_seam) if d > floor]
    if len(points) >= 2:
        ks = np.array([k for k, _ in points], float)
        logs = np.log([d for _, d in points])
        slope = np.polyfit(ks, logs, 1)[0]
        return float(math.exp(slope)), len(points), False
    if len(points) == 1:
        k0, d0 = points[0]
        later = [k for k in warmups if k > k0]
        if later:
            return float((floor / d0) ** (1.0 / (later[0] - k0))), 1, True
    return None, len(points), False


def bench_preset(name, args, video):
    started = time.perf_counter()
    preset, notes = load(name, args, video)
    if preset is None:
        return {"preset": name, "skipped": notes}
    after, window = args.frames_after, args.window
    warmups = sorted({int(k) for k in args.warmups.split(",")})
    track, duration, count = plan(preset, SimpleNamespace(audio=None, start=0.0, duration=None))
    highest = min(count - 1, args.max_frame) - max(after, window)
    if args.seam_frames:
        seams = [(int(s), "given") for s in args.seam_frames.split(",")]
    else:
        seams = candidate_seams(preset, count, max(warmups), highest, args.seams)
    if not seams:
        return {"preset": name, "skipped": f"no seam fits: {count} frames, max K {max(warmups)}, --max-frame"}
    session = ShowSession.open(preset, device=args.device, dtype=args.dtype)
    try:
        if session.blends():  # as vj render: the latent-blend trees before the first frame
            from vj.show.blends import scene_changes

            pairs = scene_changes(preset, 0.0, duration)
            if pairs:
                session.prepare(pairs)
        loaded = time.perf_counter()
        # the serial render: its first frames time the preset, then the plan is fitted to the budget
        director, engine = session.director(), session.engine()
        serial, strengths, times = [], [], []
        stream = requests(preset, director, track, 0.0, count)
        last = None
        for i, request in enumerate(stream):
            tick = time.perf_counter()
            serial.append(engine.render(request))
            times.append(time.perf_counter() - tick)
            strengths.append(float(request.strength))
            if i + 1 == PROBE:
                per_frame = statistics.median(times[1:])
                seams, warmups = fit_budget(seams, warmups, after, per_frame, args.budget_s)
                last = min(count - 1, max(s for s, _ in seams) + max(after, window))
                log(f"{name}: {per_frame:.3f} s/frame, seams {[s for s, _ in seams]}, K {warmups}, serial to {last}")
            if last is not None and i >= last:
                break
        stream.close()
        serial_s = time.perf_counter() - loaded
        steps = [mad(serial[i], serial[i - 1]) for i in range(1, len(serial))]  # steps[i - 1]: frame i vs i - 1
        runs = [Run(s, k, min(s + after, last)) for s, _ in seams for k in warmups if s - k >= 0]
        check = Run(0, 0, min(args.check, last) - 1) if args.check else None
        tick = time.perf_counter()
        rendered = segment_pass(session, preset, track, runs + ([check] if check else []), last, serial)
        segments_s = time.perf_counter() - tick
    finally:
        session.close()
    rows = []
    for s, what in seams:
        lo, hi = max(1, s - window), min(len(serial) - 1, s + window)
        normal = statistics.median(steps[lo - 1 : hi])
        mine = [r for r in runs if r.seam == s]
        at_seam = [r.diffs[0] for r in mine]
        rate, used, bound = decay([r.warmup for r in mine], at_seam, FIT_FLOOR)
        diffusion = preset.image_model == "diffusion"  # pixel models have no strength
        window_strength = statistics.median(strengths[max(0, s - max(warmups)) : s + 1]) if diffusion else None
        rows.append(
            {
                "seam": s,
                "chosen_as": what,
                "where": where(preset, s),
                "strength": round(window_strength, 3) if diffusion else None,
                "normal": round(normal, 4),
                "diff": {str(r.warmup): round(max(r.diffs), 4) for r in mine},
                "diff_at_seam": {str(r.warmup): round(r.diffs[0], 4) for r in mine},
                "diff_frames": {str(r.warmup): [round(d, 3) for d in r.diffs] for r in mine},
                "invisible": {str(r.warmup): max(r.diffs) <= max(normal, args.floor) for r in mine},
                "invisible_strict": {str(r.warmup): max(r.diffs) <= max(0.5 * normal, args.floor) for r in mine},
                "decay_per_frame": None if rate is None else round(rate, 4),
                "decay_is_bound": bound,
                "decay_points": used,
                "one_minus_strength": round(1.0 - window_strength, 3) if diffusion else None,
            }
        )

    def smallest(key):
        """The smallest K from which on (it and every larger K tested) every seam is invisible; None if none."""
        found = None
        for k in reversed(warmups):
            if all(row[key].get(str(k), True) for row in rows):
                found = k
            else:
                break
        return found

    return {
        "preset": name,
        "notes": notes,
        "image_model": preset.image_model,
        "fps": preset.frames_per_second,
        "frames_in_render": count,
        "scene_starts": [b for b in scene_starts(preset) if b < count],
        "fixed_noise": preset.fixed_noise,
        "steps": preset.steps,
        "warmups": warmups,
        "seams": rows,
        "min_warmup": smallest("invisible"),
        "min_warmup_strict": smallest("invisible_strict"),
        "check_max_diff": max(check.diffs) if check else None,
        "frames_rendered": len(serial) + rendered,
        "seconds_per_frame": round(per_frame, 4),
        "seconds": {
            "load": round(loaded - started, 1),
            "serial": round(serial_s, 1),
            "segments": round(segments_s, 1),
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=PRESETS, help="comma-separated preset names (presets/NAME.yaml) or paths")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--size", type=int, default=64, help="frame width and height (64: the smallest vj allows)")
    parser.add_argument("--warmups", default="0,1,2,4,8,12,16,24,32", help="warm-up frame counts K, comma-separated")
    parser.add_argument("--seams", type=int, default=3, help="seams per preset (chosen as the docstring says)")
    parser.add_argument("--seam-frames", default=None, help="these seam frames (comma-separated) for every preset")
    parser.add_argument("--frames-after", type=int, default=8, help="M: frames compared after the seam's")
    parser.add_argument("--window", type=int, default=8, help="normal diff: median over the seam +- this many frames")
    parser.add_argument("--floor", type=float, default=0.05, help="diffs at or below this (levels) are invisible")
    parser.add_argument("--max-frame", type=int, default=240, help="no seam (+ its frames after) past this frame")
    parser.add_argument("--budget-s", type=float, default=150, help="estimated seconds of segment frames per preset")
    parser.add_argument("--check", type=int, default=4, help="frames of the bit-for-bit check from frame 0 (0: none)")
    parser.add_argument("--audio", default=str(ROOT / "presets/audio/demo_beat.flac"), help="for filters, no track")
    parser.add_argument("--video", default="synthetic", help="Video Source's video: a file, synthetic, or none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        video = None if args.video == "none" else Path(args.video).absolute()
        if args.video == "synthetic":
            video = synthetic_video(Path(tmp) / "synthetic.mp4", size=args.size)
        for name in args.presets.split(","):
            log(f"{name} ...")
            results.append(bench_preset(name.strip(), args, video))
            log(f"{name}: done at {time.perf_counter() - started:.0f} s")
    done = [r for r in results if "skipped" not in r]
    never = [r["preset"] for r in done if r["min_warmup"] is None]
    needed = [r["min_warmup"] for r in done if r["min_warmup"] is not None]
    strict = [r["min_warmup_strict"] for r in done if r["min_warmup_strict"] is not None]
    print(
        json.dumps(
            {
                "model": args.model,
                "size": f"{args.size}x{args.size}",
                "device": args.device,
                "dtype": args.dtype,
                "torch_threads": torch.get_num_threads(),
                "frames_after": args.frames_after,
                "window": args.window,
                "floor": args.floor,
                "rule": "invisible: max diff over s..s+M <= max(normal, floor); strict: <= max(0.5*normal, floor)",
                "min_warmup_all": max(needed) if needed else None,
                "min_warmup_all_strict": max(strict) if strict else None,
                "never_invisible": never,
                "never_invisible_strict": [r["preset"] for r in done if r["min_warmup_strict"] is None],
                "seconds": round(time.perf_counter() - started, 1),
                "presets": results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
