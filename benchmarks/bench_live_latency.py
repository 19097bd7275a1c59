"""Audio-to-display latency and frame pacing of `vj live --model tiny` on CPU, through a PulseAudio null sink.

Clicks (10 ms, 3 kHz, every 0.5-0.9 s at random) are played into a private PulseAudio null sink; the show
records the sink's monitor through PortAudio's `pulse` device, as it would a line-in, and a preset's
`fClick` band (2-4 kHz) drives a prompt weight. For each click:
- sound server: from the player's callback handing the click to PortAudio to vj's input callback receiving it
  (the sound server's own latency, both ways, as this loopback sees it);
- vj: from that input callback to the flip that first puts on screen a frame made from audio that includes
  the click, with `fClick` responding (> 0.1).
Target (issue 8): vj <= one engine frame (the median interval between engine frames) + one audio block + one
display refresh (60 Hz). vj's part is split (medians) into the wait for the next
frame to start (the frame's newest audio arrived that long after the click), the render, and the way to the
screen. Frame pacing: intervals between new frames on screen, and between flips.

    .venv/bin/python benchmarks/bench_live_latency.py --seconds 60 --fps 15
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from live_harness import RATE, Clicks, Player, Probes, live_args, run_show, sound_server_and_screen

PRESET = """\
scenes: a quiet grey field:1 | white sparks:10*fClick
input_audio_filters:
  - {variable_name: fClick, f_center: 3000, f_width: 2000, order: 4, normalize: fixed, gain: 2, attack: 0.001,
     release: 0.03}
width: SIZE
height: SIZE
frames_per_second: FPS
"""
REFRESH_HZ = 60  # the display's refresh: Xvfb's mode (pygame's vsync there paces flips at 60 Hz)
ONSET = 0.2  # input samples above this start a click
RESPONDS = 0.1  # fClick above this: the frame reflects the click


class LatencyProbes(Probes):
    def __init__(self, show):
        self.frames = []  # (flip time, heard_at, made_at, fClick)
        self.flips = []
        self.onsets = []
        super().__init__(show, onset_threshold=ONSET)

    def flipped(self, t):
        self.flips.append(t)

    def shown(self, t, frame, values):
        self.frames.append((t, frame.heard_at, frame.made_at, (values or {}).get("fClick", 0.0)))

    def onset(self, t):
        self.onsets.append(t)


def stats(values_ms):
    a = np.asarray(values_ms, float)
    if not len(a):
        return {"n": 0}
    return {
        "n": int(len(a)),
        "median": round(float(np.median(a)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
    }


def measure(seconds, fps, size, blocksize, latency, hud, warmup):
    clicks = Clicks(first=warmup)
    first_loud = int(np.flatnonzero(np.abs(clicks.burst) > ONSET)[0])
    players = []

    def start(show):
        players.append(Player(clicks))
        return players

    with tempfile.TemporaryDirectory() as folder, sound_server_and_screen(size, size):
        preset = Path(folder) / "clicks.yaml"
        preset.write_text(PRESET.replace("SIZE", str(size)).replace("FPS", str(fps)))
        extra = [
            "--model",
            "tiny",
            "--audio-device",
            "pulse",
            "--blocksize",
            str(blocksize),
            "--latency",
            latency,
            "--duration",
            str(seconds),
        ] + ([] if hud else ["--no-hud"])
        probes = run_show(live_args(preset, *extra), LatencyProbes, start)
    player = players[0]
    handed = [player.handed(start + first_loud) for start in clicks.starts]
    settled = probes.flips[0] + warmup  # model warm-up, first renders, the sound server's first blocks
    frames = [f for f in probes.frames if f[0] >= settled]
    made = np.array([f[2] for f in frames])
    engine_frame = float(np.median(np.diff(made))) if len(made) > 2 else float("nan")
    flips = np.array([t for t in probes.flips if t >= settled])
    refresh = 1.0 / REFRESH_HZ
    block = blocksize / RATE
    target = engine_frame + block + refresh
    server, vj, missed = [], [], 0
    parts = {"wait_for_next_frame": [], "render": [], "to_screen": []}
    for sent in handed:
        arrivals = [t for t in probes.onsets if sent <= t <= sent + 1.0]
        if not arrivals:
            missed += 1
            continue
        arrived = arrivals[0]
        server.append((arrived - sent) * 1000)
        shown = [f for f in frames if f[1] >= arrived and f[3] > RESPONDS]
        if shown and shown[0][0] - arrived < 1.0:
            flip, heard, made_at, _ = shown[0]
            vj.append((flip - arrived) * 1000)
            parts["wait_for_next_frame"].append((heard - arrived) * 1000)  # the frame's newest audio: its start
            parts["render"].append((made_at - heard) * 1000)
            parts["to_screen"].append((flip - made_at) * 1000)
        else:
            missed += 1
    shown_gaps = np.diff([f[0] for f in frames]) * 1000
    return {
        "seconds": seconds,
        "warmup": warmup,
        "fps_cap": fps,
        "size": size,
        "blocksize": blocksize,
        "latency": latency,
        "hud": hud,
        "clicks": len(handed),
        "clicks_missed": missed,
        "engine_frame_ms": round(engine_frame * 1000, 1),
        "audio_block_ms": round(block * 1000, 1),
        "display_refresh_ms": round(refresh * 1000, 1),
        "target_ms": round(target * 1000, 1),
        "sound_server_ms": stats(server),
        "vj_ms": stats(vj),
        "vj_parts_median_ms": {name: round(float(np.median(v)), 1) if v else None for name, v in parts.items()},
        "within_target": f"{sum(v <= target * 1000 for v in vj)}/{len(vj)}",
        "new_frame_interval_ms": stats(shown_gaps),
        "flip_interval_ms": stats(np.diff(flips) * 1000),
        "engine_fps": round(1 / engine_frame, 1) if engine_frame > 0 else 0.0,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--fps", type=float, default=15, help="the preset's frames_per_second (the engine's cap)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--blocksize", type=int, default=256, help="vj's input block (samples at 48 kHz)")
    parser.add_argument("--latency", default="low", help="vj's input latency: low, high or seconds")
    parser.add_argument("--no-hud", action="store_true")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start (no clicks)")
    args = parser.parse_args(argv)
    result = measure(args.seconds, args.fps, args.size, args.blocksize, args.latency, not args.no_hud, args.warmup)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
