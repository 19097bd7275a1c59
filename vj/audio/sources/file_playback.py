"""Rehearsal with a file in `vj live`: the file played on an output device (or paced by the clock without one), and
the analysis given exactly the samples played, when they are played."""

import threading

import numpy as np
import soundfile

from vj.audio.sources.devices import LiveAudioError, check_latency, portaudio, resolve_device
from vj.audio.sources.files import to_mono
from vj.reconnect import STALL_SECONDS
from vj.audio.sources.kept_stream import KeptStream
from vj.audio.sources.pacer import MIN_PACED, Pacer
from vj.audio.sources.ring import Ring
from vj.config.tracks import audio_info

PLAY_SECONDS = 2.0  # file audio decoded ahead of the output callback


class FilePlayback:
    """Rehearsal with a file: plays it on an output device and gives the analysis exactly the samples played,
    when they are played (the output callback copies each block it plays into the ring). With
    `playback=False` the file is paced by the wall clock instead, without any device. Silence after the end.
    """

    def __init__(self, path, device=None, playback=True, blocksize=0, latency="high", stall_timeout=STALL_SECONDS):
        info = audio_info(path)
        self.path = path
        self.sample_rate = int(info.samplerate)
        self.duration = info.frames / info.samplerate
        self._file = soundfile.SoundFile(str(path))
        self._closing = threading.Event()
        self._kept = None
        if not playback:
            self._pacer = Pacer(self.sample_rate)
            return
        try:
            sd = portaudio()
            latency = check_latency(latency)
            index = resolve_device(sd, device, "output")
            channels = min(info.channels, sd.query_devices(index)["max_output_channels"])
            self._play = Ring(PLAY_SECONDS * self.sample_rate, channels)
            self._eof = False
            self._space = threading.Event()  # set by the callback: room in the play ring
            self._fill()  # decode ahead so playback does not start with a gap

            def open_stream(at):
                return sd.OutputStream(
                    device=at,
                    samplerate=self.sample_rate,
                    channels=channels,
                    dtype="float32",
                    blocksize=blocksize,
                    latency=latency,
                    callback=self._callback,
                )

            self._kept = KeptStream("output", device, index, open_stream, channels, self.sample_rate, stall_timeout)
            self._kept.open()
        except LiveAudioError:
            self._file.close()
            raise
        self._feeder = threading.Thread(target=self._feed, name="vj-audio-file-feeder", daemon=True)
        self._feeder.start()

    def _fill(self):
        """Decode file audio into the play ring while it has room; returns False at the end of the file."""
        ring = self._play
        while ring.free >= MIN_PACED:
            block = self._file.read(ring.free, dtype="float32", always_2d=True)
            if not len(block):
                self._eof = True
                return False
            if block.shape[1] > ring.channels:  # more channels than the device: play the mono mix on each
                block = np.repeat(to_mono(block)[:, None], ring.channels, axis=1)
            ring.write(block)
        return True

    def _feed(self):
        """Feeder thread: keep the play ring full until the end of the file (file reads never in the callback)."""
        while not self._closing.is_set():
            self._space.clear()
            if not self._fill():
                return
            self._space.wait(0.5)

    def _callback(self, outdata, frames, time_info, status):
        """PortAudio thread: play the next decoded block (silence if none) and copy it into the analysis ring."""
        got = self._play.read_into(outdata)
        if got < frames:
            outdata[got:] = 0
            if not self._eof:
                status = status or "file decoding fell behind"
        self._kept.store(outdata, status)
        self._space.set()

    @property
    def warning(self):
        """A short text for the HUD while the output device is lost or glitching; None when fine."""
        return None if self._kept is None else self._kept.warning

    @property
    def arrival(self):
        """time.monotonic() at which the last sample `read` returned was played (or due, without playback)."""
        return self._pacer.arrival if self._kept is None else self._kept.arrival

    def read(self, frames, timeout=0.0):
        """Up to `frames` mono samples of the file as they are played (or due), then silence."""
        if self._kept is not None:
            return to_mono(self._kept.read(frames, timeout))
        n = self._pacer.take(frames, timeout, self._closing)
        block = to_mono(self._file.read(n, dtype="float32", always_2d=True)) if n else np.zeros(0, np.float32)
        if len(block) < n:
            block = np.concatenate((block, np.zeros(n - len(block), np.float32)))
        return block

    def close(self):
        self._closing.set()
        if self._kept is not None:
            self._kept.close()
            self._space.set()
            self._feeder.join(1.0)
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
