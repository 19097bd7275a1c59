"""Soak: `vj live --model tiny` for a long time on live input through a PulseAudio null sink, as a show runs.

Music (a file, or a synthesized drum loop) is played over and over into a private null sink; the show records
its monitor through PortAudio's `pulse` device and renders with the tiny model on CPU, while an OSC surface on
loopback sweeps a control five times a second and steps to the next scene every 20 s. Reported:
- memory: resident memory (VmRSS) after the warm-up and at the end, growth in %, and the peak;
- stalls: the longest gap between two flips and between two new engine frames on screen (after the warm-up);
- dropped frames (finished but never shown), engine errors, audio frames lost by the input ring.
Target (issue 8): < 5% memory growth, no stall > 200 ms.

    .venv/bin/python benchmarks/soak_live.py --minutes 30 --stats out/soak.jsonl
"""

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile

from live_harness import (
    RATE,
    Loop,
    OscDriver,
    Player,
    Probes,
    free_udp_port,
    live_args,
    rss_bytes,
    run_show,
    sound_server_and_screen,
)

PRESET = """\
scenes: a forest at night:1 | sparks:4*fHi | drums:fLo || neon city:1 | rain:2*fMid | glow:glow
transition_time: 2
scene_quantize: bar
controls:
  - {name: glow, default: 0.5, range: [0, 1]}
input_audio_filters:
  - {variable_name: fLo, f_center: 80, f_width: 80, order: 5}
  - {variable_name: fMid, f_center: 1000, f_width: 800, order: 4}
  - {variable_name: fHi, f_center: 6000, f_width: 4000, order: 5, hit: true}
strength: 0.4 + 0.3*fLo
zoom_x_2d: 4*fLo
zoom_y_2d: 4*fLo
width: SIZE
height: SIZE
frames_per_second: FPS
"""
SAMPLE_SECONDS = 10.0  # memory is read this often


class SoakProbes(Probes):
    """Running figures only: nothing kept per frame, so the probes do not grow the memory they measure."""

    def __init__(self, show, warmup, trace=False):
        self.warmup = warmup
        self.trace = trace  # tracemalloc from the end of the warm-up: what is still allocated at the end grew
        self.start = None
        self.last_flip = self.last_frame = None
        self.flip_gap = self.frame_gap = 0.0
        self.frames = 0
        self.memory = []  # (seconds since the first flip, VmRSS bytes)
        self._next_sample = 0.0
        super().__init__(show)

    def flipped(self, t):
        if self.start is None:
            self.start = t
        since = t - self.start
        if since >= self.warmup and self.last_flip is not None:
            self.flip_gap = max(self.flip_gap, t - self.last_flip)
        if self.trace and since >= self.warmup and not tracemalloc.is_tracing():
            tracemalloc.start(8)
        self.last_flip = t
        if since >= self._next_sample:
            self.memory.append((since, rss_bytes()))
            self._next_sample = since + SAMPLE_SECONDS

    def shown(self, t, frame, values):
        self.frames += 1
        if self.start is not None and t - self.start >= self.warmup and self.last_frame is not None:
            self.frame_gap = max(self.frame_gap, t - self.last_frame)
        self.last_frame = t


def music(path, seconds=60.0):
    """Mono samples at 48 kHz: the file's, or a synthesized drum loop at 124 BPM."""
    if path:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != RATE:
            raise SystemExit(f"{path}: {rate} Hz; the soak plays 48 kHz files")
        return samples.mean(axis=1)
    from vj.audio.testsignals import drum_pattern

    return drum_pattern([(124.0, int(seconds * 124 / 60))], sample_rate=RATE).samples


def growth_by_line(count):
    """The `count` source lines holding the most memory allocated since tracing started (and not freed)."""
    stats = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    return [
        f"{s.size / 2**20:.2f} MB in {s.count} blocks: {s.traceback[-1]}" for s in stats.statistics("lineno")[:count]
    ]


def soak(minutes, size, fps, warmup, music_path, hud, stats, trace=0):
    samples = music(music_path)
    players = []

    port = free_udp_port()

    def start(show):
        players.append(
            Player(Loop(0.5 * samples / max(1e-9, float(np.abs(samples).max()))), latency="high", stamps=False)
        )
        players.append(OscDriver(port, "glow"))
        return players

    seconds = minutes * 60.0
    with tempfile.TemporaryDirectory() as folder, sound_server_and_screen(size, size):
        preset = Path(folder) / "soak.yaml"
        preset.write_text(PRESET.replace("SIZE", str(size)).replace("FPS", str(fps)))
        extra = ["--model", "tiny", "--audio-device", "pulse", "--duration", str(seconds), "--osc", f"127.0.0.1:{port}"]
        extra += ([] if hud else ["--no-hud"]) + (["--stats", stats] if stats else [])
        began = time.monotonic()
        probes = run_show(live_args(preset, *extra), lambda show: SoakProbes(show, warmup, trace > 0), start)
        traced = growth_by_line(trace) if trace and tracemalloc.is_tracing() else None
        wall = time.monotonic() - began
        show = probes.show
    settled = [rss for t, rss in probes.memory if t >= warmup]
    base, end = (settled[0], settled[-1]) if settled else (0, 0)
    kept = getattr(getattr(show.loop.audio, "source", None), "_kept", None)
    return {
        "minutes": minutes,
        "wall_seconds": round(wall, 1),
        "size": size,
        "fps_cap": fps,
        "hud": hud,
        "warmup_seconds": warmup,
        "frames_shown": probes.frames,
        "engine_fps_mean": round(probes.frames / max(1e-9, wall), 2),
        "rss_after_warmup_mb": round(base / 2**20, 1),
        "rss_end_mb": round(end / 2**20, 1),
        "rss_peak_mb": round(max((r for _, r in probes.memory), default=0) / 2**20, 1),
        "memory_growth_percent": round(100.0 * (end - base) / base, 2) if base else None,
        "longest_flip_gap_ms": round(probes.flip_gap * 1000, 1),
        "longest_new_frame_gap_ms": round(probes.frame_gap * 1000, 1),
        "dropped_frames": show.loop.slot.dropped,
        "engine_errors": show.loop.errors,
        "audio_frames_lost": None if kept is None else kept.ring.dropped,
        "osc_messages_sent": players[1].sent,
        "scene_at_end": show.loop.state.scenes.current + 1,
        "memory_mb_every_minute": [round(r / 2**20, 1) for t, r in probes.memory[::6]],
        **({"python_growth_by_line": traced} if traced is not None else {}),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=float, default=15, help="the preset's frames_per_second")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before memory and stalls count")
    parser.add_argument("--music", help="a 48 kHz audio file to loop (default: a synthesized drum loop)")
    parser.add_argument("--no-hud", action="store_true")
    parser.add_argument("--stats", help="also write the show's --stats JSON lines here")
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="N",
        help="diagnose growth: trace Python allocations after the warm-up (slower) and report the "
        "N source lines holding the most at the end",
    )
    args = parser.parse_args(argv)
    result = soak(args.minutes, args.size, args.fps, args.warmup, args.music, not args.no_hud, args.stats, args.trace)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
