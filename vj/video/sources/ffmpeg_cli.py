"""A stream PyAV's own FFmpeg cannot open (PyAV's wheels have no SRT), through the `ffmpeg` command where it can:
one ffmpeg process per connection decodes the URL and writes raw RGB frames at the show's size (FFmpeg's Lanczos
scaler, as the live PyAV sources) to a pipe that the decoder thread reads. The opener for vj/video/sources/newest.py.
"""

import os
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np

from vj.video.frames import VideoError
from vj.reconnect import STALL_SECONDS
from vj.video.sources.newest import Picture
from vj.video.sources.streams import OPEN_SECONDS

POLL_SECONDS = 0.1  # a read waits at most this long before closing and stalls are looked at (POSIX)
_PROTOCOLS = {}


def ffmpeg_input_protocols(command="ffmpeg"):
    """The input protocols of the `ffmpeg` command on PATH (empty when there is none), asked once."""
    if command not in _PROTOCOLS:
        found = set()
        path = shutil.which(command)
        if path:
            try:
                text = subprocess.run(
                    [path, "-hide_banner", "-protocols"], capture_output=True, text=True, timeout=10
                ).stdout
            except (OSError, subprocess.SubprocessError):
                text = ""
            inputs = text.partition("Input:")[2].partition("Output:")[0]
            found = {word.strip() for word in inputs.split()}
        _PROTOCOLS[command] = found
    return _PROTOCOLS[command]


class FfmpegOpener:
    """Opener of a stream URL through the ffmpeg command, frames at (width, height)."""

    def __init__(self, url, width, height, *, stall_timeout=STALL_SECONDS, open_timeout=OPEN_SECONDS, command="ffmpeg"):
        self.url, self.width, self.height = url, width, height
        self.stall_timeout, self.open_timeout = stall_timeout, open_timeout
        self.command = shutil.which(command) or command
        self.label = f"video {url}"
        self.description = f"stream {url} (through {command})"

    def arguments(self):
        micros = str(int(self.stall_timeout * 1e6))
        return [
            self.command,
            *("-hide_banner", "-nostdin", "-loglevel", "error"),
            *("-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0"),
            *("-rw_timeout", micros),  # ffmpeg itself gives up on a silent stream, so its end is noticed anywhere
            *("-i", self.url),
            *("-an", "-sn", "-vf", f"scale={self.width}:{self.height}:flags=lanczos"),
            *("-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"),
        ]

    def __call__(self, closing):
        errors = tempfile.TemporaryFile()  # a file, not a pipe: what ffmpeg says can never block it
        try:
            proc = subprocess.Popen(self.arguments(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        except OSError as exc:
            errors.close()
            raise VideoError(f"cannot start {self.command}: {exc}") from None
        return _PipeFeed(proc, errors, self.width, self.height, closing, (self.open_timeout, self.stall_timeout))


class _PipeFeed:
    def __init__(self, proc, errors, width, height, closing, timeouts):
        self.proc, self.errors, self.width, self.height = proc, errors, width, height
        self.closing, self.timeouts = closing, timeouts  # (for the first frame: start and connect, for the others)
        self.size = width * height * 3

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errors.close()

    def __iter__(self):
        first = None
        while True:
            data = self._read_frame(self.timeouts[first is not None])
            if data is None:
                return
            now = time.monotonic()
            first = now if first is None else first
            rgb = np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)
            yield Picture(now - first, lambda width, height, rgb=rgb: rgb)

    def _read_frame(self, timeout):
        """One frame's bytes; None when closing; VideoError when ffmpeg ends, or sends nothing for `timeout`."""
        chunks, got, last = [], 0, time.monotonic()
        fd = self.proc.stdout.fileno()
        while got < self.size:
            if self.closing.is_set():
                return None
            if os.name == "posix":
                ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
                if not ready:
                    if time.monotonic() - last > timeout:
                        raise VideoError(f"no data for {timeout:g} s")
                    continue
            chunk = os.read(fd, self.size - got)
            if not chunk:
                self.proc.wait()
                self.errors.seek(0)
                detail = " ".join(self.errors.read().decode(errors="replace").split())[-300:]
                raise VideoError(f"ffmpeg ended ({detail or f'status {self.proc.returncode}'})")
            chunks.append(chunk)
            got += len(chunk)
            last = time.monotonic()
        return b"".join(chunks)
