"""The analysis thread of `vj live`: a live source fed into an AudioAnalyzer as its audio arrives, so the frame loop
only ever reads the newest published snapshot and never waits for the analysis."""

import collections
import logging
import threading
import time
from types import MappingProxyType
from typing import Mapping, NamedTuple

from vj.audio.analysis import AudioAnalyzer
from vj.audio.beats import BeatSettings
from vj.audio.sources.kept_stream import NOTICE_SECONDS
from vj.throttled_log import RateLimitedLog

logger = logging.getLogger(__name__)


class Snapshot(NamedTuple):
    """What the analysis thread publishes after each block; the frame loop reads the newest one."""

    values: Mapping[str, float]  # read-only {variable name: value}
    audio_time: float  # seconds of audio analysed since the start
    heard_at: float  # time.monotonic() when the newest sample analysed arrived (audio-to-display latency)


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
        self._calls = collections.deque()  # callables(analyzer) for the analysis thread (deque: thread-safe)
        self._published = threading.Condition()
        self._stop = threading.Event()
        self._errors = RateLimitedLog(logger, "audio analysis blocks")
        # a recording (`vj live --record`): block(samples, position, heard_at) after each block analysed, and
        # event(kind, position, fields) for what changed the analysis between two blocks; None when not recording
        self.observer = None
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
            position, self._frames = self._frames, self._frames + len(block)
            self._heard_at = getattr(self.source, "arrival", None) or time.monotonic()
            if self.observer is not None:
                self.observer.block(block, position, self._heard_at)
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

    def _observe(self, kind, **fields):
        if self.observer is not None:
            self.observer.event(kind, self._frames, fields)

    def tap(self, at):
        """A tap tempo at time.monotonic() time `at`, applied by the analysis thread."""

        def tap():
            t = self._tracker_time(at)
            self.analyzer.beats.tap(t)
            self._observe("tap", at=t)

        self._calls.append(tap)

    def downbeat(self, at):
        """The beat nearest to time.monotonic() time `at` is the first of a bar (applied by the analysis thread)."""

        def downbeat():
            t = self._tracker_time(at)
            self.analyzer.beats.downbeat(t)
            self._observe("downbeat", at=t)

        self._calls.append(downbeat)

    def replace(self, analyzer, keep_beats=False, preset=None):
        """Analyse with `analyzer` from the next block on (a preset reload changed the filters or beat options);
        `keep_beats`: hand it the current beat tracker, so a locked tempo survives a change of filters only.
        `preset`, the one the analyzer is made for, goes to the observer (a recording notes its version)."""
        if analyzer.sample_rate != self.rate:
            raise ValueError(f"the new analyzer runs at {analyzer.sample_rate} Hz, the source at {self.rate} Hz")

        def swap():
            if keep_beats:
                analyzer.take_beats(self.analyzer)
            self.analyzer = analyzer
            self._observe("analyzer", keep_beats=keep_beats, preset=preset)
            # the new names at once (as 0), so the show never asks for a variable that is not there; the new
            # analyzer's values come with the next block, as an analysis of the recorded audio finds them
            values = dict(self._snapshot.values)
            values.update({name: 0.0 for name in analyzer.names if name not in values})
            with self._published:
                self._snapshot = self._snapshot._replace(values=MappingProxyType(values))
                self._published.notify_all()

        self._calls.append(swap)

    def _error(self, exc):
        self._error_time = time.monotonic()
        self._errors.drop(f"{type(exc).__name__}: {exc}")

    def snapshot(self):
        """The newest Snapshot (values, audio_time, heard_at); never waits for the analysis."""
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
