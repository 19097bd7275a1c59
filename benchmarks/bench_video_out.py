"""What each `--out` target adds per frame, and how late its frames arrive (issue 18). Prints one JSON line.

For each output, frames of SIZE x SIZE (default 512) carrying their index (tests/video_codes.py) are sent at FPS
(default 30) for SECONDS:
- `send_ms`: the caller's cost of `send` (median, p99), and as % of a frame interval: what the engine thread pays;
- `thread_cpu_ms`: CPU time of the output's own thread per frame (Linux: its CPU clock); encoder worker threads
  (x264's slices) and NDI's own threads are not in it, so
- `process_cpu_added_ms`: the whole process's CPU time per frame minus that of the same loop with no output
  (frame making included in both), and as % of a frame interval;
- `latency_ms`: from `send` to the frame decoded by a receiver in another process (median, p90; PyAV for UDP
  and SRT, the NDI library for NDI), `missing` counting frames lost after the first one received.
SRT goes through PyAV where its FFmpeg has srt, else through the `ffmpeg` command (`path` says which); its
receiver is then an `ffmpeg` process too (tests/test_video_out.py's ffmpeg_receiver), which decodes about one
frame later than PyAV's receiver does, and the encoding runs in the sending ffmpeg process, outside vj's: its CPU
time per frame is `ffmpeg_cpu_ms` (Linux: /proc), and `cpu_pct_of_frame` counts it with vj's own.
The virtual camera runs through a pyvirtualcam backend that discards frames (no v4l2loopback device can exist
here): its figure is vj's side only. Spout and Syphon cannot run here and are listed as skipped, as is SRT when
neither PyAV's FFmpeg nor an `ffmpeg` command on PATH has srt.

    .venv/bin/python benchmarks/bench_video_out.py [--size 512] [--fps 30] [--seconds 4]
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

from video_codes import coded_frame  # noqa: E402
from vj.video.outputs import stream as stream_module  # noqa: E402
from vj.video.outputs.targets import open_output  # noqa: E402
from vj.video.outputs.virtual_camera import VirtualCameraOutput  # noqa: E402

PYAV_RECEIVER = r"""
import json, sys, time
import av
from video_codes import read_code
url, count, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start, got = time.monotonic(), 0
with av.open(url, options={"probesize": "32", "analyzeduration": "0"}, timeout=(limit, 5)) as c:
    stream = c.streams.video[0]
    stream.thread_type = "SLICE"
    for packet in c.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            continue
        for frame in frames:
            print(json.dumps({"code": read_code(frame.to_ndarray(format="rgb24")), "t": time.monotonic()}), flush=True)
            got += 1
        if got >= count or time.monotonic() - start > limit:
            break
"""


FFMPEG_RECEIVER = r"""
import json, sys
from test_video_out import ffmpeg_frames, ffmpeg_receiver
from video_codes import read_code
url, count, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
proc = ffmpeg_receiver(url, count)
for rgb, t in ffmpeg_frames(proc, width, height):
    print(json.dumps({"code": read_code(rgb), "t": t}), flush=True)
proc.wait()
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def receiver(script, *args, env=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def thread_cpu(thread):
    """CPU seconds of a running thread (Linux and other POSIX with per-thread clocks), or None."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError):
        return None


def ffmpeg_cpu(out):
    """CPU seconds of the ffmpeg process an output sends through (Linux: /proc), or None."""
    ffmpeg = getattr(out, "_ffmpeg", None)
    try:
        with open(f"/proc/{ffmpeg.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # from the third field (state) on
    except (AttributeError, OSError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pct(ms, fps):
    return round(100 * ms * fps / 1000, 2)


def run(make, args, frames, baseline_cpu=None):
    """Send `frames` frames through the output `make()` returns (None: no output); the measurements."""
    out = make() if make else None
    tick, sends, sent_at = threading.Event(), [], {}
    cpu0 = time.process_time()
    thread0 = thread_cpu(out._thread) if out is not None else None
    ffmpeg0 = ffmpeg_cpu(out)
    for i in range(frames):
        rgb = coded_frame(i, args.size, args.size)
        if out is not None:
            sent_at[i] = time.monotonic()
            start = time.perf_counter()
            out.send(rgb)
            sends.append((time.perf_counter() - start) * 1000)
        tick.wait(1 / args.fps)
    if out is not None:
        out.wait_stats(lambda s: s["sent"] + s["dropped"] + s["errors"] >= frames, 5)
    cpu = (time.process_time() - cpu0) * 1000 / frames
    result = {"process_cpu_ms": round(cpu, 3)}
    if out is None:
        return result, sent_at
    thread1, ffmpeg1 = thread_cpu(out._thread), ffmpeg_cpu(out)
    ffmpeg_ms = (ffmpeg1 - ffmpeg0) * 1000 / frames if ffmpeg0 is not None and ffmpeg1 is not None else 0
    result = {
        "send_ms": {"median": round(statistics.median(sends), 3), "p99": round(float(np.percentile(sends, 99)), 3)},
        "send_pct_of_frame": pct(statistics.median(sends), args.fps),
        "thread_cpu_ms": round((thread1 - thread0) * 1000 / frames, 3) if thread0 is not None else None,
        "process_cpu_added_ms": round(cpu - baseline_cpu, 3),
        **({"ffmpeg_cpu_ms": round(ffmpeg_ms, 3)} if ffmpeg0 is not None else {}),
        "cpu_pct_of_frame": pct(cpu - baseline_cpu + ffmpeg_ms, args.fps),
        "stats": out.stats(),
        "warning": out.warning,
    }
    out.close()
    return result, sent_at


def latency(proc, sent_at, grace=2.0):
    """The receiver's frames against the send times; it gets `grace` seconds after the output closed to drain."""
    try:
        text, err = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        text, err = proc.communicate()
    got = [json.loads(line) for line in text.splitlines() if line.startswith('{"code"')]
    got = [g for g in got if g["code"] in sent_at]
    if not got:
        return {"received": 0, "receiver_error": err.strip().splitlines()[-1:] or None}
    lat = [(g["t"] - sent_at[g["code"]]) * 1000 for g in got]
    codes = [g["code"] for g in got]
    return {
        "latency_ms": {"median": round(statistics.median(lat), 1), "p90": round(float(np.percentile(lat, 90)), 1)},
        "received": len(codes),
        "first": codes[0],
        "missing": (codes[-1] - codes[0] + 1) - len(codes),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=4)
    args = parser.parse_args()
    frames = int(args.seconds * args.fps)
    size = (args.size, args.size)
    report = {"size": list(size), "fps": args.fps, "frames": frames, "cores": os.cpu_count()}
    report["machine"] = f"{platform.machine()} {platform.system()}, Python {platform.python_version()}"
    base, _ = run(None, args, frames)
    report["baseline_process_cpu_ms"] = base["process_cpu_ms"]
    outputs = report["outputs"] = {}

    port = free_port()
    proc = receiver(PYAV_RECEIVER, f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000", frames, 30)
    result, sent = run(
        lambda: open_output(f"udp://127.0.0.1:{port}", *size, args.fps), args, frames, base["process_cpu_ms"]
    )
    outputs["udp"] = {**result, **latency(proc, sent)}

    through_ffmpeg = stream_module.srt_through_ffmpeg()
    if stream_module.ffmpeg_has_srt() is False and not through_ffmpeg:
        outputs["srt"] = {"skipped": stream_module.srt_missing()}
    else:
        port = free_port()
        holder = {}
        url = f"srt://127.0.0.1:{port}?mode=caller&latency=20000"

        def make_srt():
            holder["out"] = open_output(f"srt://127.0.0.1:{port}", *size, args.fps)
            if through_ffmpeg:
                holder["proc"] = receiver(FFMPEG_RECEIVER, url, frames, *size)
            else:
                holder["proc"] = receiver(PYAV_RECEIVER, url, frames, 30)
            holder["out"].send(coded_frame(10**6, *size))  # opens the connection; not measured
            holder["out"].wait_stats(lambda s: s["sent"] >= 1, 10)  # a receiver connected
            return holder["out"]

        result, sent = run(make_srt, args, frames, base["process_cpu_ms"])
        path = "the ffmpeg command (sender and receiver)" if through_ffmpeg else "PyAV (sender and receiver)"
        outputs["srt"] = {"path": path, **result, **latency(holder["proc"], sent)}

    try:
        import cyndilib  # noqa: F401
    except ImportError:
        outputs["ndi"] = {"skipped": "the NDI extra is not installed: pip install 'vj[ndi]'"}
    else:
        from test_video_out import NDI_ENV, NDI_RECEIVER

        os.environ.update(NDI_ENV)  # keep this process's NDI off mDNS too: discovery by address on loopback
        name = f"vj-bench-{os.getpid()}"
        holder = {}

        def make_ndi():
            out = open_output(f"ndi:{name}", *size, args.fps)
            holder["proc"] = receiver(NDI_RECEIVER, name, frames, 30, env=NDI_ENV)
            return out

        result, sent = run(make_ndi, args, frames, base["process_cpu_ms"])
        outputs["ndi"] = {**result, **latency(holder["proc"], sent)}

    try:
        import pyvirtualcam
    except ImportError:
        outputs["virtualcam"] = {"skipped": "the virtual camera extra is not installed"}
    else:

        class Discard:
            def __init__(self, **kw):
                self.fourcc = kw["fourcc"]

            def send(self, frame):
                pass

            def close(self):
                pass

            def device(self):
                return "discard"

            def native_fourcc(self):
                return self.fourcc

        pyvirtualcam.register_backend("vj-bench-discard", Discard)
        result, _ = run(
            lambda: VirtualCameraOutput("virtualcam", *size, args.fps, backend="vj-bench-discard"),
            args,
            frames,
            base["process_cpu_ms"],
        )
        outputs["virtualcam"] = {**result, "note": "pyvirtualcam backend that discards frames: vj's side only"}

    outputs["spout"] = {"skipped": "Spout is Windows only"} if sys.platform != "win32" else {"skipped": "not run"}
    outputs["syphon"] = {"skipped": "Syphon is macOS only"} if sys.platform != "darwin" else {"skipped": "not run"}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
