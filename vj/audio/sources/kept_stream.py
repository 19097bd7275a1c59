"""A PortAudio stream kept alive from the reader side: a lost device (unplugged, its sound server gone, silent for
too long) is noticed by the reader and reopened by a helper thread, while the reader gets silence at the real-time
rate, so a dead device never blocks the show.
"""

import logging
import threading
import time

import numpy as np

from vj.audio.sources.devices import (
    OPEN_STREAMS,
    PA_LOCK,
    LiveAudioError,
    device_listing,
    find_device,
    portaudio,
    rescan_devices,
)
from vj.audio.sources.pacer import Pacer
from vj.audio.sources.ring import Ring
from vj.reconnect import RETRY_SECONDS
from vj.throttled_log import RateLimitedLog

logger = logging.getLogger(__name__)

RING_SECONDS = 4.0  # audio the ring holds: room for the reader to fall behind without losing samples
STARTUP_GRACE = 5.0  # extra time for a fresh stream's first block (PulseAudio through ALSA takes ~2 s)
NOTICE_SECONDS = 2.0  # how long a glitch (overflow, late reader) stays in `warning`


class KeptStream:
    """A PortAudio stream whose callback fills `ring` (RING_SECONDS of `channels`), kept alive from the reader side.

    `read` (the reader thread) notices a lost stream: inactive, a PortAudio error, or no audio for
    `stall_timeout`. From then on it returns silence at the real-time rate while a helper thread closes the
    stream and reopens the same device (same name or index) every RETRY_SECONDS. The callback only copies.
    """

    def __init__(self, kind, device, index, open_stream, channels, sample_rate, stall_timeout):
        self.sd = portaudio()
        self.kind = kind
        self.device = device  # as asked for: a reopen looks it up again the same way
        self.ring = Ring(RING_SECONDS * sample_rate, channels)
        self.sample_rate = sample_rate
        self.stall_timeout = stall_timeout
        self.data = threading.Event()  # set by the callback after each block
        self.stamp = (0, time.monotonic())  # (ring.written, time.monotonic()) after the callback's latest block
        self.arrival = self.stamp[1]  # time.monotonic() when the last frame `read` returned arrived
        self.glitches = 0  # callbacks with status flags (written by the callback)
        self.last_status = None
        self._open_stream = open_stream  # device index -> an opened, not yet started stream
        self._closing = threading.Event()
        self._lost = None  # why the stream is lost, None while it runs
        self._silence = None
        self._keeper = None
        self.attempts = 0  # failed reopen attempts since the stream was lost (the log)
        self._seen_glitches = self._seen_dropped = 0
        self._notice, self._notice_time = None, -float("inf")
        self._flags_log = RateLimitedLog(logger, f"audio {kind} blocks")
        self._drops_log = RateLimitedLog(logger, f"audio {kind} frames")
        self.index = index
        self.label = f"{index} '{self.sd.query_devices(index)['name']}'"

    def open(self):
        """Open and start the stream the first time; LiveAudioError if the device refuses."""
        with PA_LOCK:
            try:
                stream = self._start(self.index)
            except (self.sd.PortAudioError, ValueError) as exc:
                rate = self.sd.query_devices(self.index)["default_samplerate"]
                raise LiveAudioError(
                    f"audio {self.kind} {self.label} cannot be opened at {self.sample_rate} Hz "
                    f"({exc}); its default rate is {rate:g} Hz; "
                    f"{self.kind}s: {device_listing(self.sd, self.kind)}"
                ) from None
        self._take(stream)

    def note(self, status):
        """Callback side: remember status flags (overflow, underflow) or a glitch text for the reader to report."""
        if status:
            self.last_status = status
            self.glitches += 1

    def store(self, block, status):
        """Callback side: copy a block into the ring and stamp its arrival (one tuple: an atomic publish)."""
        self.note(status)
        self.ring.write(block)
        self.stamp = (self.ring.written, time.monotonic())
        self.data.set()

    def _start(self, index):
        stream = self._open_stream(index)
        try:
            stream.start()
        except Exception:
            stream.close()
            raise
        OPEN_STREAMS.add(self)
        return stream

    def _take(self, stream):
        """Hand a started stream to the reader side."""
        self._mark = self.ring.written + self.ring.dropped
        self._progress = time.monotonic() + STARTUP_GRACE
        self._stream = stream
        self._lost = None

    @property
    def warning(self):
        if self._lost is not None:
            return f"audio {self.kind} {self.label} lost ({self._lost}); retrying"
        if time.monotonic() - self._notice_time < NOTICE_SECONDS:
            return f"audio {self.kind} {self.label}: {self._notice}"
        return None

    def read(self, frames, timeout=0.0):
        """Up to `frames` frames (frames, channels) of what the callback stored; silence while lost."""
        if self._lost is None:
            self._watch()
        ring = self.ring
        if not ring.available and self._lost is None and timeout > 0:
            self.data.clear()
            if not ring.available:
                self.data.wait(timeout)
                self._watch()
        silence = self._silence
        if ring.available or self._lost is None:  # what a lost stream left in the ring comes first
            out = np.empty((min(frames, ring.available), ring.channels), np.float32)
            ring.read_into(out)
            if len(out):
                written, at = self.stamp  # frames after `written` came later; before it, earlier
                self.arrival = at + (ring.taken - written) / self.sample_rate
            return out
        out = np.zeros((silence.take(frames, timeout, self._closing), ring.channels), np.float32)
        self.arrival = silence.arrival
        return out

    def _watch(self):
        """Reader side: report glitches and notice a lost stream."""
        now = time.monotonic()
        if self.glitches != self._seen_glitches:
            self._seen_glitches = self.glitches
            self._notify(now, str(self.last_status))
            self._flags_log.drop(f"PortAudio reported {self.last_status}")
        dropped = self.ring.dropped
        if dropped != self._seen_dropped:
            self._drops_log.drop(f"{dropped - self._seen_dropped} frames lost: the reader fell behind")
            self._seen_dropped = dropped
            self._notify(now, "reader fell behind")
        if self._lost is not None:
            return
        progress = self.ring.written + dropped
        if progress != self._mark:
            self._mark, self._progress = progress, now
        try:
            active = self._stream.active
        except self.sd.PortAudioError as exc:
            logger.warning("audio %s %s: %s", self.kind, self.label, exc)
            return self._lose("PortAudio error", now)
        if not active:
            return self._lose("stream stopped", now)
        if now - self._progress > self.stall_timeout:
            self._lose(f"no audio for {self.stall_timeout:g} s", min(self._progress, now))

    def _notify(self, now, text):
        self._notice, self._notice_time = text, now

    def _lose(self, reason, since):
        """Switch to silence paced from `since` and start the helper thread that reopens the device."""
        logger.warning(
            "audio %s %s lost (%s); trying to reopen it every %g s", self.kind, self.label, reason, RETRY_SECONDS
        )
        self._silence = Pacer(self.sample_rate, since)
        self.attempts = 0
        self._lost = reason
        old, self._stream = self._stream, None
        self._keeper = threading.Thread(
            target=self._reopen, args=(old,), name=f"vj-audio-{self.kind}-reopen", daemon=True
        )
        self._keeper.start()

    def _close_stream(self, stream):
        """Abort and close; this blocks while a hung sound server does not answer, so never on the reader."""
        with PA_LOCK:
            OPEN_STREAMS.discard(self)
            try:
                stream.abort()
                stream.close()
            except self.sd.PortAudioError as exc:
                logger.info("audio %s %s: closing the stream: %s", self.kind, self.label, exc)

    def _reopen(self, old):
        """Helper thread: close the lost stream, then reopen the same device until it works or we close."""
        self._close_stream(old)
        while not self._closing.wait(RETRY_SECONDS if self.attempts else 0):
            try:
                with PA_LOCK:
                    if self.attempts and not OPEN_STREAMS:  # the device may have left (or come back to) the list
                        rescan_devices()
                    stream = self._start(find_device(self.sd, self.device, self.kind))
            except Exception as exc:  # whatever PortAudio says, keep trying: the show goes on in silence
                self.attempts += 1
                logger.debug("audio %s %s: reopen attempt %d failed: %s", self.kind, self.label, self.attempts, exc)
                continue
            if self._closing.is_set():
                self._close_stream(stream)
                return
            logger.warning("audio %s %s reopened after %d failed attempt(s)", self.kind, self.label, self.attempts)
            self._take(stream)
            return

    def close(self):
        """Stop the stream (and any reopening); waits at most about a second for a hung device."""
        self._closing.set()
        if self._keeper is not None:  # first, so a stream it is handing over is closed below
            self._keeper.join(1.0)
            if self._keeper.is_alive():
                logger.warning("audio %s %s: still waiting for the device to close", self.kind, self.label)
        stream, self._stream = self._stream, None
        if stream is not None:
            closer = threading.Thread(target=self._close_stream, args=(stream,), name="vj-audio-close", daemon=True)
            closer.start()
            closer.join(1.0)
            if closer.is_alive():
                logger.warning("audio %s %s: the device does not answer; left it closing", self.kind, self.label)
