"""The fps of a headless `vj live` that sends its frames to a stream output, against the same show in a window only
(issue 18). Both run the tiny model on the CPU at the preset's size for DURATION seconds with no audio; the window
is on Xvfb. Prints one JSON line: the median engine and display fps of each, from `--stats`.

    .venv/bin/python benchmarks/bench_headless.py [--size 256] [--duration 30] [--out udp://127.0.0.1:5000]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from xvfb import xvfb  # noqa: E402

PRESET = """\
scenes: a red square:1 | sparks:0.5 || a blue circle:1
frames_per_second: 30
bpm: 120
"""


def show(preset, duration, size, extra, env):
    """Median engine and display fps of one `vj live` run (the first 5 s of model loading and warm-up dropped)."""
    with tempfile.TemporaryDirectory() as work:
        stats = Path(work) / "stats.jsonl"
        command = [
            sys.executable,
            "-m",
            "vj",
            "live",
            str(preset),
            "--model",
            "tiny",
            "--width",
            str(size),
            "--height",
            str(size),
            "--audio-device",
            "none",
            "--osc",
            "off",
            "--no-hud",
            "--duration",
            str(duration),
            "--stats",
            str(stats),
            *extra,
        ]
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        records = [json.loads(line) for line in stats.read_text().splitlines()]
    records = [r for r in records if r["t"] >= 5.0]
    return {
        "engine_fps": round(statistics.median(r["engine_fps"] for r in records), 2),
        "display_fps": round(statistics.median(r["display_fps"] for r in records), 2),
        **({"outputs": records[-1]["outputs"]} if "outputs" in records[-1] else {}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--out", default="udp://127.0.0.1:5000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        preset = Path(work) / "bench.yaml"
        preset.write_text(PRESET)
        headless = show(preset, args.duration, args.size, ["--headless", "--out", args.out], dict(os.environ))
        with xvfb() as display:
            window = show(preset, args.duration, args.size, ["--windowed"], {**os.environ, "DISPLAY": display})
    print(
        json.dumps(
            {
                "size": args.size,
                "duration_s": args.duration,
                "cpus": os.cpu_count(),
                "headless_with_output": headless,
                "window_only": window,
            }
        )
    )


if __name__ == "__main__":
    main()
