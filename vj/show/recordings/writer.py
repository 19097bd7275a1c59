"""The writer of `vj live --record DIR`: the show's threads copy and enqueue, one daemon thread writes the folder.

Callers never wait for the disk: every method copies what it is given (a JSON line, an audio block, a frame) into a
queue bounded by bytes (MAX_QUEUE_BYTES). A full queue (a disk slower than the show) drops the item and stops the
recording; any error while writing (disk full, permission) stops it too. Either way `warning` says so in one line,
the thread logs it once, later calls return at once, and no exception reaches the show.

Flush policy: lines are written whole, one write per line, and the files are flushed to the OS whenever the queue runs
empty and at least every FLUSH_SECONDS while it is busy, so a killed show (SIGKILL) keeps every line up to ~0.2 s
before the kill with at most a partial last line (flushed, not fsync'd: a power cut may lose more). Audio is written
as closed FLAC chunks (see layout.py: an unclosed FLAC cannot be read back), held to 24 bits and to [-1, 1]: exact
for 16- and 24-bit sources. The frames as shown go to a fragmented MP4 (H.264, no B-frames, a keyframe every
VIDEO_KEYFRAME_SECONDS) that stays playable after a kill; close() muxes it with the audio (AAC) into show.mp4.
"""

import errno
import json
import logging
import math
import os
import threading
import time
from collections import deque
from datetime import datetime, timezone
from fractions import Fraction
from io import BytesIO
from pathlib import Path

import numpy as np

from vj import __version__
from vj.show.recordings import layout
from vj.show.recordings.layout import RecordingError
from vj.video.frames import nearest

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
MAX_QUEUE_BYTES = 256 << 20
ITEM_BYTES = 256  # what a queued item costs besides its payload (Python objects), so tiny items are bounded too
VIDEO_KEYFRAME_SECONDS = 2.0
VIDEO_OPTIONS = {"preset": "superfast", "crf": "20", "bf": "0"}
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+delay_moov", "flush_packets": "1"}
TICK_EPSILON = 1e-6


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _plain(value):
    """JSON for what json does not know: numpy scalars and arrays as numbers and lists, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _tick(t, fps):
    """The first output frame n (shown at n / fps) that shows a frame shown at show time t."""
    return math.ceil(t * fps - TICK_EPSILON)


class _Counted:
    """A binary file that adds what is written to its recorder's byte count (PyAV writes the video through it)."""

    def __init__(self, file, recorder):
        self._file, self._recorder = file, recorder

    def write(self, data):
        self._file.write(data)
        self._recorder._bytes += len(data)
        return len(data)

    def seek(self, offset, whence=os.SEEK_SET):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


class Recorder:
    """Records a live show into a new folder (layout.py); see the module's text for threads, flushing and failures.

    size, if given, is the show video's (width, height); otherwise the first shown frame's. Frames of another size
    are resized to it (nearest neighbour); odd sizes lose their last row or column (yuv420p).
    """

    def __init__(self, folder, info, sample_rate, fps, size=None, max_queue_bytes=MAX_QUEUE_BYTES):
        self.folder = Path(folder)
        self.sample_rate = int(sample_rate)
        self.fps = Fraction(fps).limit_denominator(1001)
        self._fps = float(self.fps)
        self._size = None if size is None else (int(size[0]), int(size[1]))
        self._max_bytes = int(max_queue_bytes)
        self._info = {
            "format": layout.FORMAT,
            "version": layout.VERSION,
            "vj_version": __version__,
            "started": _now(),
            "sample_rate": self.sample_rate,
            "fps": self._fps,
        }
        self._info.update((key, value) for key, value in dict(info).items() if key not in self._info)
        self._bytes = self._events = self._frames = self._video_frames = self._dropped = 0
        self._audio_samples = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer waits for items
        self._written = threading.Condition(self._lock)  # flush() waits for the writer
        self._items = deque()
        self._queued = self._put_count = self._flushed_count = 0
        self._stopped = self._failed = self._closing = self._logged = False
        self._warning = None
        self._audio_start_sent = False
        self._files = {}
        self._create()
        # writer-thread state
        self._pending, self._pending_samples, self._chunk_first = [], 0, 0
        self._chunk = max(1, round(layout.AUDIO_CHUNK_SECONDS * self.sample_rate))
        self._audio_start = None
        self._container = self._stream = self._video_file = self._current = None
        self._next_frame = 0
        self._thread = threading.Thread(target=self._run, name="vj-recorder", daemon=True)
        self._thread.start()

    def _create(self):
        folder = self.folder
        try:
            layout.check_new_folder(folder)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / layout.PRESETS).mkdir()
            (folder / layout.AUDIO).mkdir()
            self._write_info()
            for name in (layout.EVENTS, layout.FRAMES):
                self._files[name] = open(folder / name, "w", encoding="utf-8", newline="\n")
        except OSError as e:
            self._close_files()
            raise RecordingError(f"cannot record to {folder}: {e.strerror or e}") from None

    # ---- the show's side: copy, enqueue, return ----

    @property
    def warning(self):
        """One line saying why the recording stopped early (the show goes on), or None."""
        return self._warning

    def stats(self):
        """What has been written so far, and whether the recording stopped early."""
        return {
            "frames": self._frames,
            "events": self._events,
            "audio_seconds": self._audio_samples / self.sample_rate,
            "bytes": self._bytes,
            "dropped": self._dropped,
            "stopped": self._stopped,
            "video_frames": self._video_frames,
        }

    def audio(self, samples):
        """A block of mono float32 samples exactly as analysed (the analysis thread)."""
        if self._stopped or self._closing:
            return
        block = np.array(samples, dtype=np.float32).reshape(-1)
        self._put("audio", block, block.nbytes)

    def event(self, record):
        """One line of events.jsonl (any thread)."""
        self._line(layout.EVENTS, record)

    def frame(self, record):
        """One line of frames.jsonl (the engine thread)."""
        self._line(layout.FRAMES, record)

    def preset(self, version, text):
        """The preset file's text at `version`, written to presets/NNNN.yaml (any thread)."""
        if self._stopped or self._closing:
            return
        text = str(text)
        self._put("preset", (int(version), text), len(text))

    def shown(self, rgb, t):
        """A frame as the audience saw it (uint8 HxWx3, black while blacked out) at show time t (main thread)."""
        if self._stopped or self._closing:
            return
        frame = np.array(np.asarray(rgb)[..., :3], dtype=np.uint8, order="C")
        if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            self._refuse(f"a shown frame of shape {np.shape(rgb)} is not HxWx3")
            return
        t = float(t)
        self._put("shown", (frame, t, _tick(t, self._fps)), frame.nbytes)

    def audio_start(self, t):
        """The show time of the first audio sample (the first call counts): where show.mp4 places the audio."""
        with self._lock:
            if self._audio_start_sent:
                return
            self._audio_start_sent = True
        self._put("audio_start", float(t), 0)

    def flush(self, timeout=None):
        """Wait until what was queued so far is written and flushed to the OS; False if it was not (stopped, timeout).

        Not for the realtime path: for tests, and for a caller that wants a known point on disk.
        """
        with self._lock:
            target = self._put_count
            done = self._written.wait_for(
                lambda: self._flushed_count >= target or self._failed or not self._thread.is_alive(), timeout
            )
            return bool(done) and self._flushed_count >= target

    def close(self, timeout=None):
        """Write what is queued, the last audio chunk and show.mp4; idempotent; a failure becomes `warning`."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop(f"recording not finished: the disk did not keep up within {timeout} s of the show's end")
            self._log_warning()

    def _line(self, name, record):
        if self._stopped or self._closing:
            return
        try:
            text = json.dumps(record, default=_plain, separators=(",", ":")) + "\n"
        except (TypeError, ValueError) as e:
            self._refuse(f"a {name} record is not JSON ({e})")
            return
        self._put("line", (name, text), len(text))

    def _refuse(self, why):
        """An item the recording cannot take (the caller's bug): dropped and logged, the recording goes on."""
        with self._lock:
            self._dropped += 1
        log.error("recording: %s; dropped", why)

    def _put(self, kind, payload, size):
        cost = size + ITEM_BYTES
        with self._lock:
            if self._stopped or self._closing:
                return
            last = self._items[-1] if self._items else None
            if kind == "shown" and last is not None and last[0] == "shown" and last[1][2] == payload[2]:
                # the queued frame would be replaced before any output frame shows it: keep only the newest
                self._items.pop()
                self._queued -= last[2]
                self._put_count -= 1
            if self._queued + cost > self._max_bytes:
                self._dropped += 1
                self._stop_locked(
                    f"recording stopped: the disk cannot keep up (over {self._max_bytes / (1 << 20):.4g} MiB"
                    " waiting to be written); the show goes on"
                )
                self._wake.notify()  # the writer logs it
                return
            self._items.append((kind, payload, cost))
            self._queued += cost
            self._put_count += 1
            self._wake.notify()

    def _stop(self, message):
        with self._lock:
            self._stop_locked(message)

    def _stop_locked(self, message):
        self._stopped = True
        if self._warning is None:
            self._warning = " ".join(str(message).split())

    def _log_warning(self):
        if self._warning is not None and not self._logged:
            self._logged = True
            log.error("%s", self._warning)

    # ---- the writer thread ----

    def _run(self):
        last_flush = time.monotonic()
        try:
            while True:
                self._log_warning()
                with self._lock:
                    item = self._items.popleft() if self._items else None
                if item is None:
                    self._flush_files()
                    last_flush = time.monotonic()
                    with self._lock:
                        self._wake.wait_for(
                            lambda: self._items or self._closing or (self._stopped and not self._logged)
                        )
                        if not self._items and self._closing:
                            break
                    continue
                kind, payload, cost = item
                getattr(self, "_write_" + kind)(payload)
                with self._lock:
                    self._queued -= cost
                if time.monotonic() - last_flush >= FLUSH_SECONDS:
                    self._flush_files()
                    last_flush = time.monotonic()
            self._finish()
        except Exception as e:  # noqa: BLE001 - whatever stops the writer becomes the warning, never the show's error
            self._fail(e)
        finally:
            self._log_warning()
            with self._lock:
                self._written.notify_all()

    def _flush_files(self):
        for file in self._files.values():
            file.flush()
        if self._video_file is not None:
            self._video_file.flush()
        with self._lock:
            self._flushed_count = self._put_count - len(self._items)  # every item popped so far is written
            self._written.notify_all()

    def _what(self, error):
        """The error in a few words for the warning."""
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full ({error.strerror})"
        if isinstance(error, OSError):
            return f"cannot write to {self.folder} ({error.strerror or error})"
        return f"{type(error).__name__}: {error}"

    def _fail(self, error):
        with self._lock:
            self._failed = True
            self._stop_locked(f"recording stopped: {self._what(error)}; the show goes on")
            self._items.clear()
            self._queued = 0
        self._log_warning()
        try:
            if self._container is not None:
                self._container.close()
        except Exception:  # noqa: BLE001 - the disk already failed; the fragments written so far stay readable
            pass
        self._close_files()

    def _close_files(self):
        files = [*self._files.values(), getattr(self, "_video_file", None)]
        self._files = {}
        self._video_file = None
        for file in files:
            try:
                if file is not None:
                    file.close()
            except OSError:
                pass

    def _write_whole(self, name, data):
        """A file written whole under a temporary name, then renamed into place (never seen half-written)."""
        path = self.folder / name
        part = path.with_name(path.name + layout.PARTIAL)
        with open(part, "wb") as file:
            file.write(data)
        os.replace(part, path)
        self._bytes += len(data)

    def _write_info(self):
        self._write_whole(layout.INFO, (json.dumps(self._info, indent=2, default=_plain) + "\n").encode())

    def _write_line(self, payload):
        name, text = payload
        self._files[name].write(text)
        self._bytes += len(text)
        if name == layout.EVENTS:
            self._events += 1
        else:
            self._frames += 1

    def _write_preset(self, payload):
        version, text = payload
        self._write_whole(layout.preset_name(version), text.encode("utf-8"))

    def _write_audio_start(self, t):
        self._audio_start = t
        self._info["audio_start"] = t
        self._write_info()

    def _write_audio(self, block):
        self._pending.append(block)
        self._pending_samples += len(block)
        self._audio_samples += len(block)
        while self._pending_samples >= self._chunk:
            self._write_chunk(self._chunk)

    def _write_chunk(self, count):
        import soundfile

        samples = np.concatenate(self._pending)
        chunk, rest = samples[:count], samples[count:]
        self._pending, self._pending_samples = ([rest] if len(rest) else []), len(rest)
        data = BytesIO()
        soundfile.write(data, np.clip(chunk, -1.0, 1.0), self.sample_rate, format="FLAC", subtype=layout.AUDIO_SUBTYPE)
        self._write_whole(layout.audio_chunk_name(self._chunk_first), data.getvalue())
        self._chunk_first += len(chunk)

    def _write_shown(self, payload):
        rgb, _, tick = payload
        if self._current is None:
            self._open_video(rgb)
            self._next_frame = tick
        while self._next_frame < tick:
            self._encode(self._current, self._next_frame)
            self._next_frame += 1
        self._current = nearest(rgb, self._stream.width, self._stream.height)

    def _open_video(self, rgb):
        import av

        width, height = self._size or (rgb.shape[1], rgb.shape[0])
        self._video_file = _Counted(open(self.folder / layout.SHOW_VIDEO, "w+b"), self)
        self._container = av.open(self._video_file, "w", format="mp4", container_options=FRAGMENTED)
        try:
            av.Codec("libx264", "w")
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.options = {**VIDEO_OPTIONS, "g": str(max(1, round(self._fps * VIDEO_KEYFRAME_SECONDS)))}
        except Exception:  # noqa: BLE001 - an FFmpeg built without libx264
            log.info("recording: libx264 is missing, show video in MPEG-4 part 2")
            stream = self._container.add_stream("mpeg4", rate=self.fps)
            stream.bit_rate = 8_000_000
            stream.codec_context.gop_size = max(1, round(self._fps * VIDEO_KEYFRAME_SECONDS))
        stream.width, stream.height, stream.pix_fmt = max(2, width & ~1), max(2, height & ~1), "yuv420p"
        self._stream = stream

    def _encode(self, rgb, n):
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = n
        self._container.mux(self._stream.encode(frame))
        self._video_frames += 1

    def _finish(self):
        """At close, on the writer thread: the last audio chunk, the last frame, the files, then show.mp4."""
        if self._pending_samples:
            self._write_chunk(self._pending_samples)
        if self._container is not None:
            self._encode(self._current, self._next_frame)
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None
        self._flush_files()
        self._close_files()
        self._info["ended"] = _now()
        self._write_info()
        if (self.folder / layout.SHOW_VIDEO).exists():
            try:
                self._mux()
            except Exception as e:  # noqa: BLE001 - the recording is whole without show.mp4
                self._stop(f"{layout.SHOW} not made: {self._what(e)}; the recording keeps {layout.SHOW_VIDEO}")
                try:
                    (self.folder / (layout.SHOW + layout.PARTIAL)).unlink(missing_ok=True)
                except OSError:
                    pass

    def _mux(self):
        """show.mp4: the show video's packets as they are, with the audio encoded to AAC from audio_start on."""
        import av

        video_path = self.folder / layout.SHOW_VIDEO
        show_path = self.folder / layout.SHOW
        part = show_path.with_name(show_path.name + layout.PARTIAL)
        with av.open(str(video_path)) as source, av.open(str(part), "w", format="mp4") as out:
            video_in = source.streams.video[0]
            video_out = out.add_stream_from_template(video_in)
            audio = iter(())
            if layout.audio_chunks(self.folder):
                audio = self._aac(out.add_stream("aac", rate=self.sample_rate, layout="mono"))
            pending = next(audio, None)
            for packet in source.demux(video_in):
                if packet.dts is None:
                    continue
                at = packet.pts * packet.time_base
                while pending is not None and pending.pts * pending.time_base <= at:
                    out.mux(pending)
                    pending = next(audio, None)
                packet.stream = video_out
                out.mux(packet)
            while pending is not None:
                out.mux(pending)
                pending = next(audio, None)
        self._bytes += part.stat().st_size
        os.replace(part, show_path)
        video_path.unlink()

    def _aac(self, stream):
        """Yield the AAC packets of the recorded audio, its first sample at show time audio_start (0 if never set)."""
        import av

        start = round((self._audio_start or 0.0) * self.sample_rate)
        for first, samples in layout.iter_audio(self.folder):
            at = start + first
            if at < 0:  # before show time 0: an MP4 starts there
                samples, at = samples[-at:], 0
            if not len(samples):
                continue
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, :]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = self.sample_rate, at, Fraction(1, self.sample_rate)
            yield from stream.encode(frame)
        yield from stream.encode(None)
