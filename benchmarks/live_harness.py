"""`vj live` built in-process exactly as the command builds it, on a private PulseAudio null sink and an Xvfb
screen, with probes for the live benchmarks (latency, frame pacing, soak).

The probes only wrap: the frame slot's `put` (which values each engine frame was made from), the display's
`present` (when each frame reached the screen) and the audio source's `read` (what arrived when). The sound
server and X server are the test suite's helpers (tests/pulse.py, tests/xvfb.py): the Debian packages
pulseaudio, pulseaudio-utils, libasound2-plugins, xvfb and x11-apps.
"""

import contextlib
import math
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pulse import PulseDaemon  # noqa: E402  (tests/ helpers)
from xvfb import xvfb  # noqa: E402

RATE = 48000


@contextlib.contextmanager
def sound_server_and_screen(width, height):
    """A PulseAudio null sink (default sink; its monitor the default source) and an Xvfb screen, for this
    process: PortAudio's `pulse` device records what is played into the sink; pygame draws on the screen."""
    with tempfile.TemporaryDirectory(prefix="vj-bench-") as folder:
        daemon = PulseDaemon(folder)
        os.environ.update(daemon.client_env)
        daemon.start()
        try:
            from vj.audio.sources.devices import rescan_devices

            rescan_devices()  # PortAudio listed the devices before the daemon ran
            with xvfb(width, height) as display:
                os.environ.update(DISPLAY=display, SDL_VIDEODRIVER="x11", SDL_AUDIODRIVER="dummy")
                yield daemon
        finally:
            daemon.stop()


def rss_bytes():
    """This process' resident memory (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Player:
    """Plays `next_block(frames)` into the default sink through PortAudio ('pulse'); with `stamps`, notes for
    each block the time.monotonic() at which its callback handed it over (`handed(sample)` gives any sample's).
    A soak plays without stamps: they grow by about 1 MB a minute, which would count as the show's memory."""

    def __init__(self, next_block, blocksize=256, latency="low", stamps=True):
        import sounddevice as sd

        self._next = next_block
        self._stamps = [] if stamps else None  # (first sample of the block, time.monotonic() of its callback)
        self._written = 0
        self._stream = sd.OutputStream(
            device="pulse",
            samplerate=RATE,
            channels=2,
            dtype="float32",
            blocksize=blocksize,
            latency=latency,
            callback=self._callback,
        )
        self._stream.start()

    def _callback(self, outdata, frames, time_info, status):
        if self._stamps is not None:
            self._stamps.append((self._written, time.monotonic()))
        block = self._next(frames)
        outdata[:] = block[:, None]
        self._written += frames

    def handed(self, sample):
        """time.monotonic() at which sample number `sample` was handed to the sound server."""
        stamps = self._stamps
        for first, at in reversed(stamps):
            if first <= sample:
                return at + (sample - first) / RATE
        return float("nan")

    def close(self):
        self._stream.stop()
        self._stream.close()


class Clicks:
    """A click train: a 10 ms 3 kHz burst every 0.5-0.9 s (random, so clicks fall anywhere in an engine frame),
    the first after `first` seconds."""

    LENGTH = int(0.010 * RATE)

    def __init__(self, first=1.0, seed=0):
        self.rng = np.random.default_rng(seed)
        t = np.arange(self.LENGTH) / RATE
        self.burst = (0.8 * np.sin(2 * np.pi * 3000 * t) * np.hanning(self.LENGTH)).astype(np.float32)
        self.position = 0
        self.next_click = int(first * RATE)
        self.starts = []  # sample numbers of the clicks played

    def __call__(self, frames):
        out = np.zeros(frames, np.float32)
        end = self.position + frames
        while self.next_click < end:
            self.starts.append(self.next_click)
            self.next_click += int(self.rng.uniform(0.5, 0.9) * RATE)
        for start in self.starts[-2:]:  # clicks are >= 0.5 s apart: only the last two can reach this block
            lo, hi = max(start, self.position), min(start + self.LENGTH, end)
            if lo < hi:
                out[lo - self.position : hi - self.position] += self.burst[lo - start : hi - start]
        self.position = end
        return out


class Loop:
    """A track played over and over (the soak's live input)."""

    def __init__(self, samples):
        self.samples = np.asarray(samples, np.float32)
        self.position = 0

    def __call__(self, frames):
        idx = (self.position + np.arange(frames)) % len(self.samples)
        self.position += frames
        return self.samples[idx]


class Probes:
    """Watches the show built by `vj.live.main.build`: `flipped(t)` for every flip, `shown(t, frame, values)` for
    each new engine frame on screen (with the values the engine made it from), `onset(t)` for each loud onset's
    first sample at the audio input callback (with `onset_threshold`). Override them; these do nothing."""

    def __init__(self, show, onset_threshold=None):
        self.show = show
        made = {}  # id(frame) -> values the engine made it from (only frames not yet shown)
        loop = show.loop
        real_put = loop.slot.put

        def put(frame):
            made[id(frame)] = dict(loop.last_values)
            if len(made) > 16:  # frames the display never showed
                made.pop(next(iter(made)))
            real_put(frame)

        loop.slot.put = put
        display = show.display
        real_present = display.present

        def present(frame=None, **kwargs):
            real_present(frame, **kwargs)
            self.flipped(display.flipped_at)
            if frame is not None:
                self.shown(display.flipped_at, frame, made.pop(id(frame), None))

        display.present = present
        if onset_threshold is not None:
            self._watch_input(loop.audio.source, onset_threshold)

    def flipped(self, t):
        pass

    def shown(self, t, frame, values):
        pass

    def onset(self, t):
        pass

    def _watch_input(self, source, threshold):
        real_read = source.read
        quiet_until = [0.0]

        def read(frames, timeout=0.0):
            block = real_read(frames, timeout)
            if len(block):
                loud = np.flatnonzero(np.abs(block) > threshold)
                if loud.size:
                    at = source.arrival - (len(block) - 1 - loud[0]) / RATE
                    if at > quiet_until[0]:
                        self.onset(at)
                    quiet_until[0] = at + 0.2
            return block

        source.read = read


def live_args(preset, *extra):
    """The parsed `vj live PRESET ...` command line (every default as the CLI gives it)."""
    from vj.cli import build_parser

    return build_parser().parse_args(["live", str(preset), "--windowed", "--osc", "off", *extra])


def run_show(args, make_probes, start=None):
    """Build the show as `vj live` does, attach `make_probes(show)`, call `start(show)` (which returns the things
    it started, each with a close(), e.g. a Player), run the show for `args.duration` s; returns the probes."""
    from vj.live.main import build

    with contextlib.ExitStack() as stack:
        show = build(args, stack)
        probes = make_probes(show)
        for part in start(show) if start is not None else ():
            stack.callback(part.close)
        show.run()
    return probes


def free_udp_port():
    """A UDP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OscDriver:
    """A performer's OSC surface over loopback UDP: control `name` swept by a sine every 0.2 s, the next scene
    every `scene_every` seconds."""

    def __init__(self, port, name, scene_every=20.0):
        from pythonosc.udp_client import SimpleUDPClient

        self._client = SimpleUDPClient("127.0.0.1", port)
        self._name, self._scene_every = name, scene_every
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="bench-osc", daemon=True)
        self._thread.start()

    def _run(self):
        start = time.monotonic()
        next_scene = start + self._scene_every
        while not self._stop.wait(0.2):
            now = time.monotonic()
            self._client.send_message(f"/vj/control/{self._name}", 0.5 + 0.5 * math.sin(now - start))
            self.sent += 1
            if now >= next_scene:
                self._client.send_message("/vj/scene/next", [])
                next_scene += self._scene_every
                self.sent += 1

    def close(self):
        self._stop.set()
        self._thread.join(2.0)
