"""An srt:// output through the `ffmpeg` command, where PyAV's own FFmpeg has no srt protocol (PyAV's wheels have
none) and an `ffmpeg` on PATH has it (Debian's does): the input side's way (vj/video/sources/ffmpeg_cli.py),
turned round. One ffmpeg process per connection reads raw RGB frames at the output's size from a pipe and sends
them as the PyAV path does (vj/video/outputs/stream.py): libx264 with the same options, MPEG-TS muxed packet by
packet, to the same URL (listener or caller, latency, timeouts).

How the process is driven, on the output's thread (ThreadedOutput's contract):
- open: ffmpeg starts, is given one black *priming* frame (ffmpeg reads its input's first frame before it opens
  its output; a `trim` filter drops that frame) and then opens the URL: an SRT listener waits there for its
  receiver, a caller connects. ffmpeg's log says `Stream mapping:` once its output is open, so the open returns
  then (listener: while it waits, the warning says so, as the PyAV path's); an ffmpeg that ends first (a caller
  that found no listener) is a failed open, with ffmpeg's own error line.
- write: one frame's bytes into the pipe. On POSIX the pipe is non-blocking and the write waits for room in
  steps of POLL_SECONDS, looking at `closing` and at ffmpeg's end between steps; ffmpeg that reads no more (a
  stalled receiver) leaves the write waiting, which the base reports as a stuck write. A receiver that left or a
  dead ffmpeg is a failed write (ffmpeg ends when its output fails), with ffmpeg's error line.
- close: stdin closed (ffmpeg sends what it holds and ends), then killed after CLOSE_GRACE seconds; at once when
  it never connected.

Timestamps count frames at the output's nominal rate (`-framerate`), not the send times as on the PyAV path.
"""

import os
import select
import shutil
import subprocess
import threading
from fractions import Fraction

import numpy as np

from vj.video.outputs.stream import ENCODER_OPTIONS, GOP_SECONDS, MUXER_OPTIONS, StreamOutput, even_frame
from vj.video.sources.ffmpeg_cli import ffmpeg_input_protocols

COMMAND = "ffmpeg"
POLL_SECONDS = 0.1  # a wait for ffmpeg (its output open, room in the pipe) looks at closing this often
CLOSE_GRACE = 0.5  # seconds ffmpeg gets to end by itself after its stdin closed, before it is killed
END_WAIT = 1.0  # seconds a failed write waits for ffmpeg's last words (it ends right after its output failed)
OPENED = "Stream mapping:"  # ffmpeg logs this (info) once all its outputs are open, before it transcodes


def command_has_srt(command=COMMAND):
    """Whether an `ffmpeg` command on PATH has FFmpeg's srt protocol. The input side's list answers for output
    too: FFmpeg's srt protocol (libsrt.c) is one protocol that both reads and writes."""
    return "srt" in ffmpeg_input_protocols(command)


def ffmpeg_arguments(command, url, width, height, fps):
    """The ffmpeg command line: raw rgb24 frames of width x height on stdin to `url` as the PyAV path sends."""
    options = {**ENCODER_OPTIONS, "g": str(max(1, round(fps * GOP_SECONDS)))}
    return [
        command,
        *("-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info"),  # level: error lines are told apart
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"),
        *("-framerate", str(Fraction(fps).limit_denominator(1001)), "-i", "pipe:0"),
        *("-vf", "trim=start_frame=1", "-an"),  # trim: the priming frame
        *("-c:v", "libx264", "-pix_fmt", "yuv420p"),
        *[word for key, value in options.items() for word in (f"-{key}", value)],
        *("-muxdelay", "0"),  # the ffmpeg command's own max_delay (0.7 s by default)
        *[word for key, value in MUXER_OPTIONS.items() for word in (f"-{key}", value)],
        *("-f", "mpegts", url),
    ]


class FfmpegProcess:
    """One ffmpeg process sending to a URL: its stdin for frames, its log read on a thread (`opened` once its
    output is open, `ended` once it ended, its first error line kept for `failure`: the cause, where the
    lines after it are what failed because of it). A wait ends with OSError once `closing()` holds."""

    def __init__(self, arguments, name, closing):
        self.opened, self.ended, self.closing = threading.Event(), threading.Event(), closing
        self._error = self._last = None
        try:
            self.proc = subprocess.Popen(
                arguments, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0
            )
        except OSError as exc:
            raise OSError(f"cannot start {arguments[0]}: {exc}") from None
        self._fd = self.proc.stdin.fileno()
        if os.name == "posix":
            os.set_blocking(self._fd, False)
        threading.Thread(target=self._read_log, name=f"{name}-log", daemon=True).start()

    def _read_log(self):
        try:
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace").strip()
                if line and "[info] " not in line:
                    self._last = line  # what an ffmpeg that logs no error line said last (a bad option)
                if line.endswith(OPENED):
                    self.opened.set()
                elif self._error is None and ("[error] " in line or "[fatal] " in line):
                    # "[srt @ 0x55d0] [error] Connection to ... failed: ...": the words after the level
                    self._error = line.split("] ", 2 if " @ 0x" in line else 1)[-1]
        finally:
            self.ended.set()

    def failure(self, wait=END_WAIT):
        """The OSError for an ffmpeg that ended (waiting up to `wait` seconds for it to end and say why)."""
        self.ended.wait(wait)
        status = self.proc.poll()
        detail = self._error or self._last or (f"status {status}" if status is not None else "it reads no frames")
        return OSError(f"ffmpeg ended ({detail})")

    def wait_opened(self):
        """Until ffmpeg's output is open; OSError when ffmpeg ends first."""
        while not self.opened.wait(POLL_SECONDS):
            if self.closing():
                raise OSError("closed")
            if self.ended.is_set():
                raise self.failure()

    def write(self, data):
        """All of `data` into ffmpeg's stdin; OSError when ffmpeg ended."""
        view = memoryview(data).cast("B")
        while view:
            if self.closing():
                raise OSError("closed")
            if self.ended.is_set():
                raise self.failure()
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:  # the pipe is full: wait for ffmpeg to read (POSIX)
                select.select([], [self._fd], [], POLL_SECONDS)
            except OSError:  # EPIPE: ffmpeg is gone
                raise self.failure() from None

    def close(self):
        """End ffmpeg: stdin closed and CLOSE_GRACE seconds to end (once its output was open), then killed."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.opened.is_set():
            try:
                self.proc.wait(CLOSE_GRACE)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.ended.wait(CLOSE_GRACE):  # the log thread read to the end of ffmpeg's stderr
            self.proc.stderr.close()


class FfmpegStreamOutput(StreamOutput):
    """An srt:// target sent through the ffmpeg command (see the module's text)."""

    command = COMMAND

    def __init__(self, target, width, height, fps, **kw):
        self._ffmpeg = None
        super().__init__(target, width, height, fps, **kw)

    def open_sink(self):
        self.say_listening()
        width, height = self.width & ~1, self.height & ~1
        command = shutil.which(self.command) or self.command
        arguments = ffmpeg_arguments(command, self.url, width, height, self.fps)
        self._ffmpeg = FfmpegProcess(arguments, f"vj-out-{self.target}", lambda: self.closing)
        self._ffmpeg.write(np.zeros((height, width, 3), np.uint8))  # the priming frame
        self._ffmpeg.wait_opened()

    def write_frame(self, rgb, at):
        self._ffmpeg.write(even_frame(rgb, self.width, self.height))

    def close_sink(self):
        ffmpeg, self._ffmpeg = self._ffmpeg, None
        if ffmpeg is not None:
            ffmpeg.close()
