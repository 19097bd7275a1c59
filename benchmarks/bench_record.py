"""What `vj live --record DIR` costs the show, and the disk it writes per minute (issue 20).

Runs the real `vj live` command twice for the same preset and model, once without and once with `--record DIR`:
headless (`--headless --out udp://127.0.0.1:PORT`, a port nothing listens on), rehearsing a 16-bit WAV of a
music-like signal (kick, hats, bass, chords at 124 bpm; `--audio FILE --no-playback`), `--osc off`, `--stats` and
`--duration`. The preset (written into a temporary folder) has two audio filters, three scenes and a zoom/rotation
expression. From the `--stats` lines after the warm-up: the median engine fps and latency (audio heard -> frame
handed on) of each run; of the recording: its last `recording` stats (dropped, stopped), whether show.mp4 decodes
(frames, length, audio), and the folder's size per minute of show, split into audio (FLAC), frames.jsonl,
events.jsonl, show.mp4 and the rest. Prints a table, then one JSON line. Each run also says how many CPU seconds
other processes took meanwhile (`others_cpu_s`): on a shared 2-core machine a busy neighbour, not the recording,
is what usually costs the engine frames; `--max-others S` runs such a run again once the machine is idle.

    .venv/bin/python benchmarks/bench_record.py [--model tiny] [--width 256 --height 256] [--fps 24] [--seconds 20]
        [--repeat 2] [--max-others 3] [--keep DIR]
"""

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 48000
BPM = 124

PRESET = """\
scenes: >-
  a neon city at night, rain:1 | lightning:2*fLo
  ||
  a forest of glass, caustics:1 | fireflies:fHi
  ||
  deep ocean creatures, bioluminescence:1 | plankton:fHi
scene_duration: 6
transition_time: 1
frames_per_second: FPS
input_audio_filters:
  - {variable_name: fLo, f_center: 80, f_width: 80, hit: true}
  - {variable_name: fHi, f_center: 6000, f_width: 4000}
strength: 0.3 + 0.3*fLo
zoom_x_2d: 2*(1 + fLo_hit)
zoom_y_2d: 2*(1 + fLo_hit)
rotate_2d: 0.5*sin(t)
"""


def music(seconds, seed=0):
    """A mono music-like signal at RATE: a kick on every beat, noise hats on the off-beats, a bass line and a
    chord pad that change every bar, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    beat = 60.0 / BPM
    out = np.zeros(n)
    kick_t = np.arange(int(0.25 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (50 * kick_t + 60 * (1 - np.exp(-kick_t * 30)) / 30)) * np.exp(-kick_t * 12)
    hat = rng.standard_normal(int(0.04 * RATE)) * np.exp(-np.arange(int(0.04 * RATE)) / RATE * 90)
    hat = np.diff(hat, prepend=0.0)  # brighter
    for i, start in enumerate(np.arange(0, seconds, beat / 2)):
        at = int(start * RATE)
        burst = kick if i % 2 == 0 else 0.25 * hat
        end = min(n, at + len(burst))
        out[at:end] += burst[: end - at]
    roots = [55.0, 55.0 * 2 ** (8 / 12), 55.0 * 2 ** (3 / 12), 55.0 * 2 ** (10 / 12)]  # A F C G
    bar = (t // (4 * beat)).astype(int) % len(roots)
    root = np.asarray(roots)[bar]
    phase = 2 * np.pi * np.cumsum(root) / RATE
    out += 0.3 * np.sin(phase) * (0.6 + 0.4 * np.cos(2 * np.pi * t / beat))
    for ratio in (4.0, 4 * 2 ** (4 / 12), 4 * 2 ** (7 / 12)):  # a major triad two octaves up
        out += 0.07 * np.sin(ratio * phase)
    return (0.9 * out / np.max(np.abs(out))).astype(np.float32)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def busy_seconds():
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit=300.0):
    """Wait (up to `limit` s) until the machine is idle: under 0.3 cores busy over 3 s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = busy_seconds()
        time.sleep(3.0)
        if busy_seconds() - busy < 0.9:
            return


def measured(preset, track, args, work, record=None):
    """`show(...)`; with --max-others, again (up to 3 tries, each after the machine is idle) while other
    processes took more than that many CPU seconds during it. Each try's contention is kept in `others_tries`."""
    tries = []
    for attempt in range(3 if args.max_others is not None else 1):
        if args.max_others is not None:
            wait_quiet()
            if attempt and record is not None:
                shutil.rmtree(record)  # the contended try's recording: --record wants a new folder
        result = show(preset, track, args, work, record)
        tries.append(result["others_cpu_s"])
        if args.max_others is None or result["others_cpu_s"] <= args.max_others:
            break
    result["others_tries"] = tries
    return result


def folder_bytes(folder):
    """{part: bytes} of a recording folder: audio (FLAC chunks), frames.jsonl, events.jsonl, show.mp4, other."""
    parts = {"audio_flac": 0, "frames_jsonl": 0, "events_jsonl": 0, "show_mp4": 0, "other": 0}
    for path in Path(folder).rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        key = {"frames.jsonl": "frames_jsonl", "events.jsonl": "events_jsonl", "show.mp4": "show_mp4"}.get(rel)
        if key is None:
            key = "audio_flac" if rel.startswith("audio/") and rel.endswith(".flac") else "other"
        parts[key] += path.stat().st_size
    return parts


def probe_video(path):
    """Decode show.mp4 whole: its video frames, size and length, the audio's length; or the error."""
    import av

    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            frames, last = 0, 0.0
            for frame in container.decode(video):
                frames += 1
                last = float(frame.pts * frame.time_base)
            result = {"decodes": True, "frames": frames, "size": f"{video.width}x{video.height}"}
            rate = video.guessed_rate or video.average_rate
            result["video_s"] = round(last + (1 / float(rate) if rate else 0.0), 2)
        with av.open(str(path)) as container:
            if container.streams.audio:
                audio = container.streams.audio[0]
                samples = sum(f.samples for f in container.decode(audio))
                result["audio_s"] = round(samples / audio.sample_rate, 2)
            else:
                result["audio_s"] = None
        return result
    except Exception as e:  # noqa: BLE001 - the benchmark reports it
        return {"decodes": False, "error": f"{type(e).__name__}: {e}"}


def show(preset, track, args, work, record=None):
    """One `vj live` run; its stats after the warm-up, CPU seconds, wall time and what it printed."""
    stats = Path(work) / ("stats-record.jsonl" if record else "stats.jsonl")
    command = [
        sys.executable,
        "-m",
        "vj",
        "live",
        str(preset),
        "--model",
        args.model,
        "--width",
        str(args.width),
        "--height",
        str(args.height),
        "--device",
        args.device,
        "--audio",
        str(track),
        "--no-playback",
        "--osc",
        "off",
        "--no-hud",
        "--headless",
        "--out",
        f"udp://127.0.0.1:{free_udp_port()}",
        "--duration",
        str(args.seconds),
        "--stats",
        str(stats),
        *(["--record", str(record)] if record else []),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = busy_seconds()
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    busy = busy_seconds() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"vj live exited {done.returncode}:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
    kept = [r for r in records if r["t"] >= args.warmup] or records
    latency = [r["latency_ms"] for r in kept]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result = {
        "engine_fps": round(statistics.median(r["engine_fps"] for r in kept), 2),
        "latency_ms": round(statistics.median(latency), 1),
        "latency_p90_ms": round(float(np.percentile(latency, 90)), 1),
        "dropped_frames": records[-1].get("dropped_frames"),
        "engine_errors": records[-1].get("engine_errors"),
        "cpu_s": round(cpu, 1),
        "others_cpu_s": round(max(0.0, busy - cpu), 1),  # other processes on the machine meanwhile: contention
        "wall_s": round(wall, 1),
        "stats_lines": len(kept),
    }
    outputs = records[-1].get("outputs")
    if outputs:
        result["outputs"] = outputs
    if "recording" in records[-1]:
        result["recording"] = records[-1]["recording"]
    words = ("record", "error", "warn")  # the greeting's recording line, and anything the show complained of
    said = [line for line in (done.stdout + done.stderr).splitlines() if any(w in line.lower() for w in words)]
    if said:
        result["printed"] = said[-5:]
    return result


def recording_summary(folder, seconds, last_stats):
    parts = folder_bytes(folder)
    total = sum(parts.values())
    per_minute = 60.0 / seconds
    info = json.loads((Path(folder) / "recording.json").read_text())
    lines = {name: sum(1 for _ in open(Path(folder) / name)) for name in ("frames.jsonl", "events.jsonl")}
    return {
        "files": sum(1 for p in Path(folder).rglob("*") if p.is_file()),
        "bytes": total,
        "mb_per_minute": round(total * per_minute / 1e6, 2),
        "mb_per_minute_parts": {k: round(v * per_minute / 1e6, 3) for k, v in parts.items()},
        "stats_bytes_at_last_line": last_stats.get("bytes"),
        "dropped": last_stats.get("dropped"),
        "stopped": last_stats.get("stopped"),
        "frames_jsonl_lines": lines["frames.jsonl"],
        "events_jsonl_lines": lines["events.jsonl"],
        "ended": "ended" in info,
        "audio_start": info.get("audio_start"),
        "leftovers": [
            p.name for p in Path(folder).rglob("*") if p.name.endswith(".part") or p.name == "show.video.mp4"
        ],
        "show_mp4": probe_video(Path(folder) / "show.mp4")
        if (Path(folder) / "show.mp4").exists()
        else {"decodes": False, "error": "no show.mp4"},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--fps", type=float, default=24, help="the preset's frames_per_second (the engine's cap)")
    parser.add_argument("--seconds", type=float, default=20, help="the show's length (--duration)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=float, default=3.0, help="stats lines before this show time are left out")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs (without, with), alternating")
    parser.add_argument(
        "--max-others",
        type=float,
        metavar="S",
        help="a run during which other processes used over S CPU seconds is run again once the machine is idle",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the recording folders here (DIR/1, DIR/2 ...)")
    args = parser.parse_args(argv)
    plain, recorded, summaries = [], [], []
    with tempfile.TemporaryDirectory(prefix="vj-bench-record-") as work:
        preset = Path(work) / "record.yaml"
        preset.write_text(PRESET.replace("FPS", f"{args.fps:g}"))
        track = Path(work) / "music.wav"
        import soundfile

        soundfile.write(track, music(args.seconds + 15), RATE, subtype="PCM_16")
        for i in range(1, args.repeat + 1):
            folder = Path(args.keep or work) / f"recording-{i}"
            plain.append(measured(preset, track, args, work))
            recorded.append(measured(preset, track, args, work, folder))
            summaries.append(recording_summary(folder, args.seconds, recorded[-1].get("recording", {})))
    result = {
        "model": args.model,
        "size": f"{args.width}x{args.height}",
        "fps_cap": args.fps,
        "seconds": args.seconds,
        "device": args.device,
        "cpus": os.cpu_count(),
        "without_record": plain,
        "with_record": recorded,
        "recordings": summaries,
    }
    rows = [("", "without --record", "with --record")]
    for key in ("engine_fps", "latency_ms", "latency_p90_ms", "cpu_s", "others_cpu_s", "wall_s"):
        rows.append((key, " / ".join(str(r[key]) for r in plain), " / ".join(str(r[key]) for r in recorded)))
    for row in rows:
        print(f"{row[0]:<16}{row[1]:>24}{row[2]:>24}")
    for i, summary in enumerate(summaries, 1):
        parts = summary["mb_per_minute_parts"]
        print(
            f"recording {i}: {summary['mb_per_minute']} MB/min (audio {parts['audio_flac']}, frames.jsonl "
            f"{parts['frames_jsonl']}, events.jsonl {parts['events_jsonl']}, show.mp4 {parts['show_mp4']}, other "
            f"{parts['other']}); dropped {summary['dropped']}, stopped {summary['stopped']}; "
            f"show.mp4 {summary['show_mp4']}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
