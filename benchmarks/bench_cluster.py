"""Distributed renders and prerenders (issue 22): wall time of `vj render` and `vj prerender --all-pairs` serial
against `--ray` on a local Ray instance of this machine, whole commands (model loading and Ray's start included).

    .venv/bin/python benchmarks/bench_cluster.py                          # tiny model, 128x128, 2 workers
    .venv/bin/python benchmarks/bench_cluster.py --size 256 --seconds 16

The render is a preset of 4 scenes with motion at 12 fps (`--seconds` long), in `--workers` segments with the default
warm-up; the prerender computes every ordered pair of its 4 scenes (12 transitions, quality lowest) into a fresh
cache. Prints one JSON object: seconds per command and the speed-ups, with the machine's CPU count.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESET = """\
scenes: a misty forest || a neon city || the deep sea || a desert at noon
model: tiny
width: {size}
height: {size}
frames_per_second: 12
scene_duration: {scene}
translate_x: 2
zoom_x_2d: 1
"""
BLENDS = "transition_mode: latent_blend\ntransition_quality: lowest\n"


def timed(args, env):
    started = time.perf_counter()
    command = [sys.executable, "-m", "vj", *map(str, args)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"vj {' '.join(map(str, args))} failed: {done.stderr[-2000:]}")
    return round(time.perf_counter() - started, 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the render")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        preset = work / "p.yaml"
        preset.write_text(PRESET.format(size=args.size, scene=args.seconds / 4))
        blend = work / "blend.yaml"
        blend.write_text(preset.read_text() + BLENDS)
        ray = ["--ray", "--workers", args.workers, "--segments", args.workers]
        result = {"cpus": os.cpu_count(), "size": args.size, "seconds": args.seconds, "workers": args.workers}
        env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache-serial"))
        result["render_serial_s"] = timed(["render", preset, "-o", work / "a.mp4"], env)
        result["render_ray_s"] = timed(["render", preset, "-o", work / "b.mp4", *ray], env)
        result["prerender_serial_s"] = timed(["prerender", blend, "--all-pairs"], env)
        env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache-ray"))
        result["prerender_ray_s"] = timed(["prerender", blend, "--all-pairs", "--ray", "--workers", args.workers], env)
    result["render_speedup"] = round(result["render_serial_s"] / result["render_ray_s"], 2)
    result["prerender_speedup"] = round(result["prerender_serial_s"] / result["prerender_ray_s"], 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
