"""Video in: what a frame costs at the show's size (512x512 by default), as ms and as a share of a frame at 30 fps.

(a) A render's file (`VideoFile`, stride 1): decoding, RGB conversion and the LANCZOS resize of each frame, timed
(wall time, and CPU time of the process: FFmpeg decodes on threads of its own) over every frame of a coded H.264
clip, after the first; then, with the helper thread that prepares the next frame, what the engine thread still
waits for when the engine itself takes --engine-ms per frame.
(b) A live UDP MPEG-TS stream (`LiveVideo`): a sender process (PyAV, libx264 ultrafast/zerolatency, real time)
streams coded frames over loopback; the cost is this process's CPU time per frame decoded (the decoder thread
and FFmpeg's threads; the main thread only waits), and the latency is from the moment the sender encodes a
frame to the moment its picture is in the slot (CLOCK_MONOTONIC is shared by processes on one machine).

Prints one JSON line.
Run: python benchmarks/bench_video_in.py [--size 512] [--source 1280x720] [--seconds 5] [--engine-ms 50]
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from video_codes import coded_frame, read_code, write_coded_video  # noqa: E402

from vj.video.sources.file import VideoFile  # noqa: E402
from vj.video.sources.specs import open_video  # noqa: E402

FPS = 30
FRAME_MS = 1000 / FPS


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_file(path, size, frames, engine_ms):
    """The work per frame (no helper thread), then what the engine thread waits for with the helper thread
    preparing the next frame while the engine spends `engine_ms` on each (slept: a GPU's time)."""
    source = VideoFile(path, size, size, prefetch=False)
    source.frame_for(0.0)  # opened and warm
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for i in range(1, frames):
        source.frame_for(i / FPS)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    assert source.stats()["used"] == frames
    source.close()
    source = VideoFile(path, size, size)
    source.frame_for(0.0)
    waited = 0.0
    for i in range(1, frames):
        start = time.perf_counter()
        source.frame_for(i / FPS)
        waited += time.perf_counter() - start
        time.sleep(engine_ms / 1000)
    source.close()
    ms, cpu_ms, wait_ms = (1000 * x / (frames - 1) for x in (wall, cpu, waited))
    return {
        "ms_per_frame": round(ms, 2),
        "cpu_ms_per_frame": round(cpu_ms, 2),
        "pct_of_frame": round(100 * ms / FRAME_MS, 1),
        f"engine_wait_ms_per_frame_at_{engine_ms:g}ms_engine": round(wait_ms, 2),
    }


def bench_udp(size, width, height, seconds):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"udp://127.0.0.1:{port}"
    source = open_video(url, size, size, live=True)
    count = int(seconds * FPS)
    sender = subprocess.Popen(
        [sys.executable, __file__, "--send", f"{url}?pkt_size=1316", str(count), f"{width}x{height}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    t0 = float(sender.stdout.readline().split()[1])
    frames = []
    try:
        assert source.wait_until(lambda s: s.frame_for(0.0) is not None, 10), source.warning
        decoded, cpu = source.stats()["decoded"], cpu_seconds()
        source.wait_until(lambda s: frames.append(s.peek()) or sender.poll() is not None, seconds + 10)
        decoded, cpu = source.stats()["decoded"] - decoded, cpu_seconds() - cpu
    finally:
        sender.wait(10)
        source.close()
    latency = sorted(1000 * (f.decoded_at - (t0 + read_code(f.rgb) / FPS)) for f in {id(f): f for f in frames}.values())
    cpu_ms = 1000 * cpu / max(decoded, 1)
    return {
        "cpu_ms_per_frame": round(cpu_ms, 2),
        "pct_of_frame": round(100 * cpu_ms / FRAME_MS, 1),
        "latency_ms_median": round(float(np.median(latency)), 1),
        "latency_ms_p95": round(float(np.percentile(latency, 95)), 1),
        "frames": decoded,
        "of_sent": count,
    }


def send(url, count, width, height):
    with av.open(url, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30", "bf": "0"}
        pictures = [coded_frame(i, width, height) for i in range(count)]
        t0 = time.monotonic()
        print(f"started {t0}", flush=True)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(pictures[i], format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(stream.encode(frame))
            time.sleep(max(0.0, t0 + (i + 1) / FPS - time.monotonic()))


def main():
    if sys.argv[1:2] == ["--send"]:
        url, count, size = sys.argv[2:5]
        return send(url, int(count), *map(int, size.split("x")))
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="the show's frames: SIZE x SIZE")
    parser.add_argument("--source", default="1280x720", help="the video's frames, WxH")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--engine-ms", type=float, default=50.0, help="a render's engine time per frame (simulated)")
    args = parser.parse_args()
    width, height = map(int, args.source.split("x"))
    frames = int(args.seconds * FPS)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_coded_video(Path(tmp) / "clip.mp4", frames, fps=FPS, width=width, height=height)
        render = bench_file(path, args.size, frames, args.engine_ms)
    live = bench_udp(args.size, width, height, args.seconds)
    result = {
        "bench": "video_in",
        "out": f"{args.size}x{args.size}",
        "source": f"{width}x{height} H.264 {FPS} fps",
        "render_file": render,
        "live_udp": live,
        "pct_of": f"a frame at {FPS} fps ({FRAME_MS:.1f} ms)",
        "pyav": av.__version__,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
