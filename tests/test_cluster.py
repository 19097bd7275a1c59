"""`vj render --ray` and `vj prerender --ray` (vj.cluster) on a real local Ray instance started by `vj` itself.

The segment plan is pure arithmetic and tested as such. The cluster tests run the real command line in subprocesses
with the tiny random model and compare the distributed render with the serial one, frame by frame: the first segment
bit for bit, every frame within MAX_MEAN_DIFF (measured below) of the serial frame at its index, which no other frame
is (so a wrong order or a repeated frame fails). A worker is killed mid-render for real (SIGKILL of its
`ray::SegmentRenderer` process), and Ctrl-C is a real SIGINT. Each local Ray start costs several seconds: the serial
reference render is shared by the module. The tests that need Ray are skipped without it; the one-line error of
`--ray` without Ray is tested with Ray hidden.
"""

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import soundfile

from conftest import ROOT, interrupt_after_frames, tone, write
from vj.cluster.segments import DEFAULT_WARMUP, Segment, plan_segments, scene_starts

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed: vj[ray]")

FPS = 12
COUNT = 336  # 28 s at 12 fps: the scenes' and the track's length
# Four scenes of 7 s (starting at frames 84, 168, 252), the picture sliding right by a track-driven amount each
# frame, new noise every frame (fixed_noise: false) at a track-driven strength: any two frames differ by 9 or more
# of 255 (mean absolute difference), so a frame out of place cannot pass for another. The tiny model renders such a
# frame in a few ms on one thread: the render is long so that a worker killed or a Ctrl-C lands mid-way.
PRESET = """\
scenes: a red fox | sparks:fHi || a blue whale | rain:fLo || a green tree || a city at night
scene_duration: 7
frames_per_second: 12
width: 64
height: 64
model: tiny
input_audio: track.wav
input_audio_filters:
  - {variable_name: fLo, f_center: 105, f_width: 65}
  - {variable_name: fHi, f_center: 900, f_width: 600}
translate_x: 3 + 4*fLo
strength: 0.6 + 0.3*fHi
fixed_noise: false
"""
# How far (mean absolute difference of 0..255 RGB values) a frame may be from the serial render's frame at its
# index. Measured here (2 cores, --segments 3 --warmup 4): 0 for 313 of 336 frames, at most 0.0001 for the rest (a
# few pixels off by one). Without a warm-up (--warmup 0) a segment's first frame is 12.7..14.6 away (its next one
# 0.009), and any two frames of the serial render are 9.1 or more apart (neighbours 9.9..19.2): 1.0 passes the
# rounding noise and fails a cold segment start and any frame out of place (a frame within 1.0 of serial frame i is
# 8 or more from every other serial frame).
MAX_MEAN_DIFF = 1.0
LOSSY = 4.0  # the same for frames decoded from an MP4, on 4x4 squares' means (see assert_mp4_like_serial)
SIMPLE = "scenes: a fox || a whale\nscene_duration: 1\nwidth: 64\nheight: 64\nmodel: tiny\n"
NO_RAY = "import sys; sys.modules['ray'] = None; from vj.cli import main; sys.exit(main(sys.argv[1:]))"


# --- the segment plan --------------------------------------------------------------------------------------------


def spans(segments):
    return [(s.first, s.end, s.warmup) for s in segments]


@pytest.mark.parametrize("count", [1, 2, 7, 24, 96, 100, 1001])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("warmup", [0, 4, DEFAULT_WARMUP])
def test_segments_cover_every_frame_once_in_order(count, n, warmup):
    segments = plan_segments(count, n, warmup, boundaries=[5, 23, 50, count - 3])
    assert [s.index for s in segments] == list(range(min(n, count)))
    assert segments[0].first == 0 and segments[-1].end == count
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.first  # no gap, no overlap
    assert all(s.frames >= 1 for s in segments)
    assert sum(s.frames for s in segments) == count
    assert segments[0].warmup == 0 and segments[0].start == 0
    assert all(s.warmup == min(warmup, s.first) and s.start == s.first - s.warmup >= 0 for s in segments)


def test_even_cuts_without_boundaries():
    assert spans(plan_segments(100, 4, 10)) == [(0, 25, 0), (25, 50, 10), (50, 75, 10), (75, 100, 10)]
    assert spans(plan_segments(10, 3, 2)) == [(0, 3, 0), (3, 7, 2), (7, 10, 2)]
    assert spans(plan_segments(5, 1)) == [(0, 5, 0)]


def test_a_segment_with_few_frames_before_it_warms_up_on_those_only():
    assert spans(plan_segments(8, 4, 24)) == [(0, 2, 0), (2, 4, 2), (4, 6, 4), (6, 8, 6)]


def test_cuts_move_to_the_nearest_scene_start_within_a_quarter_segment():
    # 100 frames in 4: even cuts at 25, 50, 75, a quarter segment is 6.25 frames
    assert [s.first for s in plan_segments(100, 4, 0, [23])][1:] == [23, 50, 75]
    assert [s.first for s in plan_segments(100, 4, 0, [31])][1:] == [31, 50, 75]  # 6 away: moves
    assert [s.first for s in plan_segments(100, 4, 0, [32, 43, 82])][1:] == [25, 50, 75]  # 7 away: stays
    assert [s.first for s in plan_segments(100, 4, 0, [20, 27, 56, 70])][1:] == [27, 56, 70]  # the nearest wins
    assert [s.first for s in plan_segments(100, 4, 0, [23, 27])][1:] == [23, 50, 75]  # a tie: the earlier
    assert [s.first for s in plan_segments(100, 4, 0, [0, -3, 100, 130])][1:] == [25, 50, 75]  # not inside: ignored
    moved = plan_segments(100, 4, 8, [23])
    assert (moved[1].first, moved[1].warmup, moved[1].start) == (23, 8, 15)


def test_more_segments_than_frames_gives_one_frame_each():
    assert plan_segments(3, 8, 2) == [Segment(0, 0, 1, 0), Segment(1, 1, 2, 1), Segment(2, 2, 3, 2)]


@pytest.mark.parametrize("count,n", [(0, 3), (-5, 2), (10, 0), (10, -1)])
def test_a_plan_of_nothing_is_refused(count, n):
    with pytest.raises(ValueError, match=f"a render of {count} frames in {n} segments"):
        plan_segments(count, n)


def test_scene_starts_are_the_output_frames_where_scenes_begin():
    assert scene_starts([1, 2, 1.5], 12) == [12, 36, 54]
    assert scene_starts([1, 2, 1.5], 12, start=1.0) == [24, 42]  # the first boundary is the render's first frame
    assert scene_starts([1, 2, 1.5], 12, start=2.0) == [12, 30]
    assert scene_starts([0.5, 0.5], 8) == [4, 8]
    assert scene_starts([], 12) == []
    segments = plan_segments(COUNT, 3, 4, scene_starts([7, 7, 7, 7], FPS))  # the plan of the render tested below
    assert spans(segments) == [(0, 84, 0), (84, 252, 4), (252, 336, 4)]


# --- without Ray ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["render", "prerender"])
def test_ray_missing_is_one_line(tmp_path, command):
    preset = write(tmp_path, SIMPLE)
    out = tmp_path / "out.mp4"
    args = [command, preset, "--ray", "-o", out] if command == "render" else [command, preset, "--ray", "--all-pairs"]
    result = subprocess.run(
        [sys.executable, "-c", NO_RAY, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"vj {command}: error: --ray needs Ray: pip install 'vj[ray]' (or drop --ray to render on this machine)\n"
    )
    assert not out.exists()


# --- helpers for the cluster runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """The preset and its track (a 100 Hz and a 900 Hz tone taking turns each second, as long as the scenes)."""
    folder = tmp_path_factory.mktemp("cluster")
    sr = 22050
    track = np.concatenate([tone(100, 1, sr), tone(900, 1, sr)] * (COUNT // FPS // 2))
    soundfile.write(str(folder / "track.wav"), track, sr)
    return write(folder, PRESET)


@pytest.fixture(scope="module")
def serial(preset):
    """The serial render of `preset` with torch on as many threads as each of two local workers gets (cores // 2:
    the same float arithmetic; on a busy 2-core machine torch's default of 2 threads is also ~40x slower here)."""
    out, pngs = preset.parent / "serial.mp4", preset.parent / "serialpng"
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2))}
    result = subprocess.run(
        [sys.executable, "-m", "vj", "render", str(preset), "-o", str(out), "--frames", str(pngs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    frames, files = pngs_of(pngs)
    assert len(frames) == COUNT
    # every frame is far from every other (new noise each frame, a sliding picture, changing scenes and weights):
    # a frame of the distributed render within MAX_MEAN_DIFF of serial frame i cannot be any other frame
    flat = frames.reshape(COUNT, -1).astype(np.float32)
    gap = min(np.abs(flat[i + 1 :] - flat[i]).mean(axis=1).min() for i in range(COUNT - 1))
    assert gap > 4 * MAX_MEAN_DIFF
    return SimpleNamespace(out=out, frames=frames, files=files)


def pngs_of(folder):
    """(frames as an (n, H, W, 3) uint8 array, the PNG files in frame order) of a --frames folder."""
    from PIL import Image

    files = sorted(Path(folder).glob("frame_*.png"))
    assert [f.name for f in files] == [f"frame_{i:06d}.png" for i in range(len(files))]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), files


def streams(path):
    """(decoded video frames, video stream seconds, audio stream seconds, decoded audio samples) of an MP4."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        video_s, audio_s = float(video.duration * video.time_base), float(audio.duration * audio.time_base)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video)])
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    return frames, video_s, audio_s, samples


def frame_diffs(a, b, block=1):
    """The mean absolute difference (of 0..255 values) of each frame of `a` from the frame of `b` at its index,
    after averaging `block` x `block` pixel squares."""
    a, b = blocks(a, block), blocks(b[: len(a)], block)
    return np.abs(a - b).reshape(len(a), -1).mean(axis=1)


def blocks(frames, size):
    n, h, w, c = frames.shape
    return frames.reshape(n, h // size, size, w // size, size, c).astype(np.float32).mean(axis=(2, 4))


def assert_matches_serial(frames, files, serial, first_segment_end):
    """`frames` (a distributed render's PNGs) against the serial render's: as many, the first segment's files byte
    for byte, every other frame within MAX_MEAN_DIFF of the serial frame at its index (and so of no other one).
    Returns the differences."""
    assert len(frames) == COUNT
    for mine, theirs in zip(files[:first_segment_end], serial.files):
        assert mine.read_bytes() == theirs.read_bytes(), f"{mine.name} is not the serial render's"
    own = frame_diffs(frames, serial.frames)
    assert own.max() <= MAX_MEAN_DIFF, f"frame {own.argmax()} is {own.max():.3f} from the serial one"
    return own


def assert_mp4_like_serial(out, frames, serial):
    """The MP4 holds `frames` in order (as far as H.264 keeps them), with a track as long as the serial MP4's."""
    decoded, video_s, audio_s, samples = streams(out)
    serial_decoded, serial_video_s, serial_audio_s, serial_samples = streams(serial.out)
    assert len(decoded) == len(serial_decoded) == COUNT
    assert video_s == serial_video_s == pytest.approx(COUNT / FPS)
    assert abs(audio_s - video_s) < 1 / FPS  # in sync
    assert (audio_s, samples) == (serial_audio_s, serial_samples)
    # H.264 at 64x64 loses 5..9 (mean absolute difference) of these noisy frames, about as much as one frame differs
    # from the next (10..20); on 4x4 squares' means it loses at most 2.3 and neighbours still differ by 7 or more
    own = frame_diffs(decoded, frames, 4)
    assert own.max() < LOSSY
    assert (own[1:] < frame_diffs(decoded[1:], frames, 4)).all()  # MP4 frame i + 1 is nearer PNG i + 1 than PNG i
    assert (own[:-1] < frame_diffs(decoded[:-1], frames[1:], 4)).all()  # and MP4 frame i nearer PNG i than i + 1
    assert frame_diffs(decoded, serial_decoded, 4).max() < LOSSY


class Run:
    """`vj ARGS` in a subprocess; its stderr (and stdout) read char by char on threads, so that a test can wait for
    what it prints (and for files it writes) while it runs."""

    def __init__(self, args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vj", *map(str, args)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err, self.out = [], []
        self.open = 2
        self.changed = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True).start()

    @property
    def ended(self):
        return self.open == 0

    def _read(self, stream, into):
        while char := stream.read(1):
            with self.changed:
                into.append(char)
                if char in "]\n":
                    self.changed.notify_all()
        with self.changed:
            self.open -= 1
            self.changed.notify_all()

    @property
    def stderr(self):
        with self.changed:
            return "".join(self.err)

    @property
    def stdout(self):
        with self.changed:
            return "".join(self.out)

    def progress(self):
        """The frames the progress bar shows now (0 before it shows any)."""
        shown = re.findall(r"(\d+)/\d+ \[", self.stderr)
        return int(shown[-1]) if shown else 0

    def wait_for(self, what, condition, timeout=300):
        """Wait until `condition()` holds: checked on every line or progress update, and at least every 0.2 s for
        conditions on files. Fails if vj ends first."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition():
                assert not self.ended, f"vj ended before {what}: {''.join(self.err)[-1500:]}"
                left = deadline - time.monotonic()
                assert left > 0, f"no {what} in {timeout} s: {''.join(self.err)[-1500:]}"
                self.changed.wait(min(left, 0.2))

    def finish(self, timeout=600):
        code = self.proc.wait(timeout=timeout)
        with self.changed:
            while not self.ended:
                self.changed.wait()
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def segment_workers(root):
    """The process ids of the Ray actors rendering segments (`ray::SegmentRenderer...`) started under process
    `root` (a `vj` driver: its raylet is its child, the workers the raylet's)."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        pid = int(entry.name)
        parents[pid], names[pid] = int(stat.rsplit(")", 1)[1].split()[1]), name

    def under_root(pid):
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    return sorted(p for p, name in names.items() if name.startswith("ray::SegmentRenderer") and under_root(p))


# --- the distributed render ----------------------------------------------------------------------------------------


@needs_ray
def test_distributed_render_is_the_serial_render(preset, serial, tmp_path):
    out, pngs = tmp_path / "dist.mp4", tmp_path / "distpng"
    # three segments on two workers: one of them renders two, and a segment finished early waits on the disk
    args = ["render", preset, "--ray", "--segments", 3, "--warmup", 4, "--workers", 2, "-o", out, "--frames", pngs]
    result = subprocess.run(
        [sys.executable, "-m", "vj", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    plan = f"vj render: {COUNT} frames in 3 segments (warm-up 4 frames) on 2 workers of a local Ray instance"
    assert plan in result.stderr
    assert f"wrote {COUNT} frames ({COUNT / FPS:.2f} s at 12 fps) to '{out}'" in result.stderr
    frames, files = pngs_of(pngs)
    # the plan: frames 0..83, 84..251, 252..335, the even cuts (112, 224) moved to the scene starts (84, 252)
    own = assert_matches_serial(frames, files, serial, first_segment_end=84)
    assert own[:84].max() == 0
    assert_mp4_like_serial(out, frames, serial)


@needs_ray
@pytest.mark.parametrize("lost", [2, 1], ids=["segment-waiting", "segment-written"])
def test_a_lost_worker_runs_its_segment_again(preset, serial, tmp_path, lost):
    """Two segments (frames 0..167, and 168..335 with 4 frames of warm-up) on two workers; the worker of segment
    `lost` is killed mid-way: only that segment runs again, on a worker started in its place, and the render is whole
    and still the serial one. Segment 2 waits on the driver's disk while segment 1 is written into the MP4; a lost
    segment 1 has frames in the MP4 already, which its run again must not write twice.

    Which worker process has which segment is not visible from outside, so the test finds out: it stops one worker
    (SIGSTOP) and watches what arrives. Frames of the segment being written become PNGs at once; the other segment's
    only move the progress bar. 32 more frames of one kind cannot all come from the stopped worker (it had sent at
    most a chunk or two of 8 that the driver had not taken yet), so they tell which segment the running worker has.
    Then the worker of segment `lost` is killed (the stopped one while stopped; the running one with more than half
    of its segment of 21 chunks to go), and the other one goes on."""
    out, pngs = tmp_path / "lost.mp4", tmp_path / "lostpng"
    run = Run(["render", preset, "--ray", "--segments", 2, "--warmup", 4, "--workers", 2, "-o", out, "--frames", pngs])
    stopped = None
    try:
        run.wait_for("a first chunk of frames", lambda: run.progress() >= 1)
        workers = segment_workers(run.proc.pid)
        assert len(workers) == 2, workers
        # stop the one or the other (workers are not started in segment order): the test finds out which it was
        stopped, running = workers if lost == 2 else workers[::-1]
        os.kill(stopped, signal.SIGSTOP)

        def written():
            return sum(1 for _ in pngs.glob("frame_*.png"))

        def spooled():
            return run.progress() - written()

        png0, spool0 = written(), spooled()
        run.wait_for("32 frames from the running worker", lambda: written() >= png0 + 32 or spooled() >= spool0 + 32)
        segments = {1: running, 2: stopped} if written() >= png0 + 32 else {1: stopped, 2: running}
        os.kill(segments[lost], signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # the other one goes on
            os.kill(stopped, signal.SIGCONT)
        stopped = None
        code = run.finish()
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        run.stop()
    err = run.stderr
    assert code == 0, err[-2000:]
    again = r"a worker was lost; segment (\d+) runs again"
    assert re.findall(again, err) == [str(lost)], f"stderr: {err[-1000:]!r}; stdout: {run.stdout[-1000:]!r}"
    assert f"wrote {COUNT} frames" in err
    frames, files = pngs_of(pngs)
    assert_matches_serial(frames, files, serial, first_segment_end=168)
    assert_mp4_like_serial(out, frames, serial)


@needs_ray
def test_ctrl_c_leaves_a_playable_prefix(preset, tmp_path):
    # one worker: the segment it renders is the one being written, so every frame it sends goes into the MP4
    out = tmp_path / "cut.mp4"
    args = ["render", preset, "--ray", "--segments", 2, "--warmup", 4, "--workers", 1, "-o", out]
    code, rest = interrupt_after_frames(args, frames=8)
    assert code == 130, rest[-1000:]
    said = re.search(
        rf"vj render: interrupted; the cluster's work stopped; (\d+) of {COUNT} frames \(([\d.]+) s\) are in "
        rf"'{re.escape(str(out))}', which plays",
        rest,
    )
    assert said, rest[-1000:]
    written = int(said[1])
    assert 8 <= written < COUNT
    assert float(said[2]) == pytest.approx(written / FPS, abs=0.005)
    with av.open(str(out)) as container:  # it plays: that many frames, and the track as long
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert float(video.duration * video.time_base) == pytest.approx(written / FPS)
        assert abs(float(audio.duration * audio.time_base) - written / FPS) < 1 / FPS
        assert sum(1 for _ in container.decode(video)) == written


# --- prerender and errors ------------------------------------------------------------------------------------------

LATENT_BLEND = """\
scenes: a red fox || a blue whale || a green tree
scene_duration: 1
transition_time: 0.5
transition_mode: latent_blend
transition_quality: lowest
transition_steps: 2
width: 64
height: 64
model: tiny
"""


@needs_ray
def test_prerender_on_the_cluster_fills_this_machines_cache(tmp_path):
    preset = write(tmp_path, LATENT_BLEND)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    folder = tmp_path / "xdg" / "vj" / "transitions"

    def prerender(*more):
        args = [sys.executable, "-m", "vj", "prerender", str(preset), "--all-pairs", *more]
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    result = prerender("--ray")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^6 transitions on \d+ workers: 6 computed, 0 already in the workers' caches", result.stdout)
    assert f"this machine's cache ({folder}) holds them all" in result.stdout
    again = prerender()
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.startswith(f"6 transitions: 0 computed, 6 already in the cache ({folder})")


@needs_ray
def test_a_worker_without_its_model_is_one_line(tmp_path):
    preset = write(tmp_path, SIMPLE.replace("model: tiny", "model: stabilityai/sd-turbo"))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    args = ["render", preset, "--ray", "--workers", "1", "-o", tmp_path / "out.mp4"]
    result = subprocess.run(
        [sys.executable, "-m", "vj", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 2
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    assert errors == [lines[-1]], result.stderr[-2000:]  # one line, the last
    assert lines[-1].startswith(
        "vj render: error: a worker cannot start: ModelError: the weights of 'stabilityai/sd-turbo' are not in the "
        f"Hugging Face cache ({tmp_path / 'hf' / 'hub'})"
    )
