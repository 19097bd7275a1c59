"""Live audio for `vj live`: a sound card input or a rehearsal file behind the AudioSource interface, and the
thread that analyses it as it arrives.

The PortAudio callbacks only copy blocks into lock-free rings; everything else (mixing down, noticing a lost
device, reopening it) happens on the reader side or on a helper thread, so a dead device never blocks the show.
"""

import collections
import logging
import threading
import time
from types import MappingProxyType
from typing import Mapping, NamedTuple

import numpy as np
import soundfile

from vj.audio.analysis import AudioAnalyzer
from vj.audio.beats import BeatSettings
from vj.audio.sources.files import to_mono
from vj.config.tracks import audio_info
from vj.errors import AudioError
from vj.throttled_log import RateLimitedLog

logger = logging.getLogger(__name__)

RING_SECONDS = 4.0      # audio the rings hold: room for the reader to fall behind without losing samples
PLAY_SECONDS = 2.0      # file audio decoded ahead of the output callback
RETRY_SECONDS = 1.0     # pause between attempts to reopen a lost device
STALL_SECONDS = 2.0     # a running stream that delivers nothing for this long counts as lost
STARTUP_GRACE = 5.0     # extra time for a fresh stream's first block (PulseAudio through ALSA takes ~2 s)
NOTICE_SECONDS = 2.0    # how long a glitch (overflow, late reader) stays in `warning`
MIN_PACED = 256         # paced reads wait for at least this many frames (about 5 ms) to avoid tiny blocks
LATENCIES = ("low", "high")
PORTAUDIO_MISSING = "the PortAudio library is not installed: install the system package libportaudio2 " \
                    "(Debian/Ubuntu: sudo apt-get install libportaudio2)"


class LiveAudioError(AudioError):
    """A live audio device that cannot be used; the one-line message names it and lists the valid ones."""


class AudioDevice(NamedTuple):
    """One PortAudio device as `vj devices` lists it (channels: its inputs or its outputs)."""
    index: int
    name: str
    channels: int
    default_samplerate: float


def _portaudio():
    """The sounddevice module, or LiveAudioError when PortAudio (or sounddevice itself) is missing."""
    try:
        import sounddevice
    except OSError:  # the pip wheel carries no PortAudio on Linux
        raise LiveAudioError(PORTAUDIO_MISSING) from None
    except ImportError:
        raise LiveAudioError("the Python package sounddevice is not installed: pip install sounddevice") from None
    return sounddevice


def list_audio_devices():
    """(inputs, outputs): the PortAudio devices able to record and to play, as AudioDevice tuples."""
    sd = _portaudio()
    inputs, outputs = [], []
    for index, info in enumerate(sd.query_devices()):
        for kind, found in (("input", inputs), ("output", outputs)):
            channels = info[f"max_{kind}_channels"]
            if channels > 0:
                found.append(AudioDevice(index, info["name"], channels, info["default_samplerate"]))
    return inputs, outputs


_PA_LOCK = threading.RLock()  # serializes opening, closing and rescanning across threads
_OPEN = set()                # the _KeptStream objects with an open stream (a rescan would close them)


def rescan_devices():
    """Re-read PortAudio's device list (devices plugged in, sound servers started since it was read).

    PortAudio can only do this by terminating, which closes every open stream of the process: call it only
    when none is open.
    """
    sd = _portaudio()
    with _PA_LOCK:
        sd._terminate()   # the maintainer's advice (python-sounddevice issue #125); private functions
        sd._initialize()


def _listing(sd, kind):
    devices = [(i, d["name"]) for i, d in enumerate(sd.query_devices()) if d[f"max_{kind}_channels"] > 0]
    return ", ".join(f"{i} '{name}'" for i, name in devices) or "none"


def _find_device(sd, device, kind):
    """Index of the `kind` ('input' or 'output') device `device`: None (the default), an index (int or digits)
    or a case-insensitive part of its name; LiveAudioError listing the devices if there is no such one."""
    infos = sd.query_devices()
    usable = [i for i, d in enumerate(infos) if d[f"max_{kind}_channels"] > 0]
    if device is None:
        index = sd.default.device[0 if kind == "input" else 1]
        if index is None or index not in usable:
            raise LiveAudioError(f"no default audio {kind}; {kind}s: {_listing(sd, kind)}")
        return index
    if isinstance(device, int) or str(device).strip().isdigit():
        if int(device) not in usable:
            raise LiveAudioError(f"no audio {kind} with index {int(device)}; {kind}s: {_listing(sd, kind)}")
        return int(device)
    query = str(device).lower()
    matches = [i for i in usable if query in infos[i]["name"].lower()]
    exact = [i for i in matches if infos[i]["name"].lower() == query]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise LiveAudioError(f"no audio {kind} matching '{device}'; {kind}s: {_listing(sd, kind)}")
    names = ", ".join(f"{i} '{infos[i]['name']}'" for i in matches)
    raise LiveAudioError(f"audio {kind} '{device}' is ambiguous ({names}); give its index or more of its name")


def _resolve(sd, device, kind):
    """_find_device, after rescanning once if the device is not listed and no stream is open (it may have been
    plugged in, or its sound server started, since PortAudio listed the devices)."""
    with _PA_LOCK:
        try:
            return _find_device(sd, device, kind)
        except LiveAudioError:
            if _OPEN:
                raise
            rescan_devices()
            return _find_device(sd, device, kind)


def _check_latency(latency):
    if latency in LATENCIES or (isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency > 0):
        return latency
    raise LiveAudioError(f"audio latency {latency!r} is not valid: 'low', 'high' or seconds > 0")


class Ring:
    """A lock-free single-producer/single-consumer ring of (frames, channels) float32 audio.

    The producer (an audio callback) only copies and advances `written`; the consumer only copies and advances
    `taken`; frames that do not fit are counted in `dropped`, never waited for.
    """

    def __init__(self, frames, channels):
        self.buffer = np.zeros((int(frames), int(channels)), np.float32)
        self.written = 0
        self.taken = 0
        self.dropped = 0

    @property
    def channels(self):
        return self.buffer.shape[1]

    @property
    def available(self):
        return self.written - self.taken

    @property
    def free(self):
        return len(self.buffer) - self.available

    def write(self, block):
        """Producer: store as much of `block` (frames, channels) as fits."""
        size = len(self.buffer)
        n = min(len(block), size - (self.written - self.taken))
        self.dropped += len(block) - n
        start = self.written % size
        first = min(n, size - start)
        self.buffer[start:start + first] = block[:first]
        self.buffer[:n - first] = block[first:n]
        self.written += n  # published after the copy, so the consumer never sees unwritten frames

    def read_into(self, out):
        """Consumer: copy up to len(out) frames into `out`; return how many."""
        size = len(self.buffer)
        n = min(len(out), self.written - self.taken)
        start = self.taken % size
        first = min(n, size - start)
        out[:first] = self.buffer[start:start + first]
        out[first:n] = self.buffer[:n - first]
        self.taken += n
        return n


class _Pacer:
    """Counts the frames due by the wall clock since `start`: real-time pacing for silence and --no-playback."""

    def __init__(self, sample_rate, start=None):
        self.rate = sample_rate
        self.start = time.monotonic() if start is None else start
        self.done = 0

    @property
    def arrival(self):
        """time.monotonic() at which the last frame taken is due."""
        return self.start + self.done / self.rate

    def take(self, frames, timeout, wake):
        """How many of `frames` are due now, waiting up to `timeout` (or until `wake` is set) for a few."""
        due = int((time.monotonic() - self.start) * self.rate) - self.done
        want = min(frames, MIN_PACED)
        if due < want and timeout > 0:
            wake.wait(min(timeout, (want - due) / self.rate))
            due = int((time.monotonic() - self.start) * self.rate) - self.done
        n = max(0, min(frames, due))
        self.done += n
        return n


class _KeptStream:
    """A PortAudio stream whose callback fills `ring`, kept alive from the reader side.

    `read` (the reader thread) notices a lost stream: inactive, a PortAudio error, or no audio for
    `stall_timeout`. From then on it returns silence at the real-time rate while a helper thread closes the
    stream and reopens the same device (same name or index) every RETRY_SECONDS. The callback only copies.
    """

    def __init__(self, kind, device, index, open_stream, ring, sample_rate, stall_timeout):
        self.sd = _portaudio()
        self.kind = kind
        self.device = device               # as asked for: a reopen looks it up again the same way
        self.ring = ring
        self.sample_rate = sample_rate
        self.stall_timeout = stall_timeout
        self.data = threading.Event()      # set by the callback after each block
        self.stamp = (0, time.monotonic())  # (ring.written, time.monotonic()) after the callback's latest block
        self.arrival = self.stamp[1]       # time.monotonic() when the last frame `read` returned arrived
        self.glitches = 0                  # callbacks with status flags (written by the callback)
        self.last_status = None
        self._open_stream = open_stream    # device index -> an opened, not yet started stream
        self._closing = threading.Event()
        self._lost = None                  # why the stream is lost, None while it runs
        self._silence = None
        self._keeper = None
        self.attempts = 0                  # failed reopen attempts since the stream was lost (the log)
        self._seen_glitches = self._seen_dropped = 0
        self._notice, self._notice_time = None, -float("inf")
        self._flags_log = RateLimitedLog(logger, f"audio {kind} blocks")
        self._drops_log = RateLimitedLog(logger, f"audio {kind} frames")
        self.index = index
        self.label = f"{index} '{self.sd.query_devices(index)['name']}'"

    def open(self):
        """Open and start the stream the first time; LiveAudioError if the device refuses."""
        with _PA_LOCK:
            try:
                stream = self._start(self.index)
            except (self.sd.PortAudioError, ValueError) as exc:
                rate = self.sd.query_devices(self.index)["default_samplerate"]
                raise LiveAudioError(f"audio {self.kind} {self.label} cannot be opened at {self.sample_rate} Hz "
                                     f"({exc}); its default rate is {rate:g} Hz; "
                                     f"{self.kind}s: {_listing(self.sd, self.kind)}") from None
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
        _OPEN.add(self)
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
        logger.warning("audio %s %s lost (%s); trying to reopen it every %g s",
                       self.kind, self.label, reason, RETRY_SECONDS)
        self._silence = _Pacer(self.sample_rate, since)
        self.attempts = 0
        self._lost = reason
        old, self._stream = self._stream, None
        self._keeper = threading.Thread(target=self._reopen, args=(old,), name=f"vj-audio-{self.kind}-reopen",
                                        daemon=True)
        self._keeper.start()

    def _close_stream(self, stream):
        """Abort and close; this blocks while a hung sound server does not answer, so never on the reader."""
        with _PA_LOCK:
            _OPEN.discard(self)
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
                with _PA_LOCK:
                    if self.attempts and not _OPEN:  # the device may have left (or come back to) the list
                        rescan_devices()
                    stream = self._start(_find_device(self.sd, self.device, self.kind))
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


class LiveInput:
    """A sound card input (PortAudio) as an AudioSource: mono float32 at `sample_rate`, as it arrives.

    `device`: a part of its name, its index, or None for the default input. `channels`: 1-based channel
    numbers mixed down to mono; None = channels 1 and 2 (1 on a mono device): ALSA's virtual devices ('pulse',
    'default') report 32 channels, most of them upmixed copies. A lost device is reopened in the background;
    meanwhile `read` gives silence at the real-time rate and `warning` says so.
    """

    def __init__(self, device=None, sample_rate=None, channels=None, blocksize=0, latency="high",
                 stall_timeout=STALL_SECONDS):
        sd = _portaudio()
        latency = _check_latency(latency)
        index = _resolve(sd, device, "input")
        info = sd.query_devices(index)
        available = info["max_input_channels"]
        if channels is None:
            channels = [1, 2][:available]
        channels = list(channels)
        if not channels or not all(isinstance(c, int) and 1 <= c <= available for c in channels):
            raise LiveAudioError(f"audio input {index} '{info['name']}' has {available} channel(s); channels must "
                                 f"be numbers 1..{available} (got {channels})")
        self.channels = channels
        self.sample_rate = int(sample_rate or info["default_samplerate"])
        # at least 2 channels where there are 2: asked for 1, ALSA's plug and pulse devices give the mono mix
        opened = max(max(channels), min(2, available))
        self._select = None if channels == list(range(1, opened + 1)) else [c - 1 for c in channels]
        ring = Ring(RING_SECONDS * self.sample_rate, opened)

        def open_stream(at):
            return sd.InputStream(device=at, samplerate=self.sample_rate, channels=opened, dtype="float32",
                                  blocksize=blocksize, latency=latency, callback=self._callback)
        self._kept = _KeptStream("input", device, index, open_stream, ring, self.sample_rate, stall_timeout)
        self._kept.open()

    def _callback(self, indata, frames, time_info, status):
        """PortAudio thread: copy the block into the ring, nothing else."""
        self._kept.store(indata, status)

    @property
    def warning(self):
        """A short text for the HUD while the input is lost or glitching; None when fine."""
        return self._kept.warning

    def read(self, frames, timeout=0.0):
        """Up to `frames` mono samples available now (maybe none), waiting at most `timeout` s for some."""
        block = self._kept.read(frames, timeout)
        return to_mono(block if self._select is None else block[:, self._select])

    @property
    def arrival(self):
        """time.monotonic() at which the last sample `read` returned reached the callback."""
        return self._kept.arrival

    def close(self):
        self._kept.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
            self._pacer = _Pacer(self.sample_rate)
            return
        try:
            sd = _portaudio()
            latency = _check_latency(latency)
            index = _resolve(sd, device, "output")
            channels = min(info.channels, sd.query_devices(index)["max_output_channels"])
            self._play = Ring(PLAY_SECONDS * self.sample_rate, channels)
            self._eof = False
            self._space = threading.Event()  # set by the callback: room in the play ring
            self._fill()  # decode ahead so playback does not start with a gap

            def open_stream(at):
                return sd.OutputStream(device=at, samplerate=self.sample_rate, channels=channels, dtype="float32",
                                       blocksize=blocksize, latency=latency, callback=self._callback)
            ring = Ring(RING_SECONDS * self.sample_rate, channels)
            self._kept = _KeptStream("output", device, index, open_stream, ring, self.sample_rate, stall_timeout)
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


class Snapshot(NamedTuple):
    """What the analysis thread publishes after each block; the frame loop reads the newest one."""
    values: Mapping[str, float]   # read-only {variable name: value}
    audio_time: float             # seconds of audio analysed since the start
    heard_at: float               # time.monotonic() when the newest sample analysed arrived (audio-to-display latency)


class LiveAnalysis:
    """A thread that feeds a live source into an AudioAnalyzer as audio arrives and publishes, after each
    block, an immutable Snapshot for the frame loop. Analysis errors are logged (rate-limited) and skipped;
    a lost source gives silence at the real-time rate, so the values decay to 0.

    Other threads never touch the analyzer: taps, downbeats and a new analyzer (a preset reload) are queued and
    applied by the analysis thread between two blocks.
    """

    MAX_BLOCK = 4096

    def __init__(self, source, analyzer):
        self.source = source
        self.analyzer = analyzer
        self.rate = analyzer.sample_rate
        self._frames = 0
        self._heard_at = time.monotonic()
        self._snapshot = Snapshot(MappingProxyType(dict.fromkeys(analyzer.names, 0.0)), 0.0, self._heard_at)
        self._calls = collections.deque()   # callables(analyzer) for the analysis thread (deque: thread-safe)
        self._published = threading.Condition()
        self._stop = threading.Event()
        self._errors = RateLimitedLog(logger, "audio analysis blocks")
        self._error_time = -float("inf")
        self._thread = threading.Thread(target=self._run, name="vj-audio-analysis", daemon=True)
        self._thread.start()

    @classmethod
    def for_bands(cls, source, bands, beats=BeatSettings()):
        """The analysis of `bands` (Band objects) at the source's sample rate."""
        return cls(source, AudioAnalyzer(source, bands, beats))

    @classmethod
    def for_preset(cls, source, preset):
        """The analysis of a preset's filters and beat options, as `vj render` computes them."""
        return cls(source, AudioAnalyzer.for_preset(source, preset))

    def _run(self):
        while not self._stop.is_set():
            try:
                block = self.source.read(self.MAX_BLOCK, timeout=0.05)
            except Exception as exc:  # a source must not raise; if one does, the show goes on
                self._error(exc)
                self._stop.wait(0.05)
                continue
            self._run_calls()  # after the wait for audio: what was asked meanwhile applies to this block
            if not len(block):
                continue
            try:
                self.analyzer.feed(block)
            except Exception as exc:  # one bad block must not end the analysis of a show
                self._error(exc)
            self._frames += len(block)
            self._heard_at = getattr(self.source, "arrival", None) or time.monotonic()
            self._publish()

    def _publish(self):
        values = MappingProxyType(dict(zip(self.analyzer.names, self.analyzer.values.tolist())))
        with self._published:
            self._snapshot = Snapshot(values, self._frames / self.rate, self._heard_at)
            self._published.notify_all()

    def _run_calls(self):
        while self._calls:
            call = self._calls.popleft()
            try:
                call()
            except Exception as exc:  # a tap or a reload must not end the analysis
                self._error(exc)

    def _tracker_time(self, at):
        """The beat tracker's time for time.monotonic() time `at` (analysis thread only)."""
        return self.analyzer.beats.time - (self._heard_at - at)

    def tap(self, at):
        """A tap tempo at time.monotonic() time `at`, applied by the analysis thread."""
        self._calls.append(lambda: self.analyzer.beats.tap(self._tracker_time(at)))

    def downbeat(self, at):
        """The beat nearest to time.monotonic() time `at` is the first of a bar (applied by the analysis thread)."""
        self._calls.append(lambda: self.analyzer.beats.downbeat(self._tracker_time(at)))

    def replace(self, analyzer, keep_beats=False):
        """Analyse with `analyzer` from the next block on (a preset reload changed the filters or beat options);
        `keep_beats`: hand it the current beat tracker, so a locked tempo survives a change of filters only."""
        if analyzer.sample_rate != self.rate:
            raise ValueError(f"the new analyzer runs at {analyzer.sample_rate} Hz, the source at {self.rate} Hz")

        def swap():
            if keep_beats and analyzer.hop == self.analyzer.hop:
                analyzer.beats = self.analyzer.beats
            self.analyzer = analyzer
            self._publish()  # the new names at once, so the show never asks for a variable that is gone
        self._calls.append(swap)

    def _error(self, exc):
        self._error_time = time.monotonic()
        self._errors.drop(f"{type(exc).__name__}: {exc}")

    def snapshot(self):
        """The newest (values, audio_time); never waits for the analysis."""
        return self._snapshot

    def wait_for(self, predicate, timeout):
        """Wait until a snapshot satisfies predicate(snapshot); return it, or None after `timeout` seconds."""
        with self._published:
            if self._published.wait_for(lambda: predicate(self._snapshot), timeout):
                return self._snapshot
        return None

    @property
    def warning(self):
        """The source's warning, or a note for a recent analysis error; None when fine."""
        if time.monotonic() - self._error_time < NOTICE_SECONDS:
            return "audio analysis error (see the log)"
        return getattr(self.source, "warning", None)

    def close(self):
        """Stop the thread (within about 0.1 s); the source stays open."""
        self._stop.set()
        self._thread.join(1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
