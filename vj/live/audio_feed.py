"""The show's audio side: variable snapshots with the time their newest audio was heard, taps, reloads, Link.

Every kind (a sound card, a rehearsal file, silence) answers the same calls from the engine and main threads:
`snapshot()` -> (values, heard_at), `tap(at)`, `downbeat(at)`, `use_preset(preset)`, `warning`, `close()`.
Times are time.monotonic() seconds. With `tempo_source: link` the musical variables come from an Ableton Link
session instead of the audio's beat tracker, and taps propose a tempo to the session.
"""

import collections
import logging
import time
from typing import Protocol, runtime_checkable

from vj.audio import AudioAnalyzer
from vj.audio.beats import TapTimes
from vj.audio.link import MAX_BPM, MIN_BPM, LinkClock, LinkError
from vj.audio.sources.files import SilenceSource
from vj.errors import AudioError

log = logging.getLogger(__name__)

NOTICE_SECONDS = 5.0  # how long a one-off note (a refused downbeat, refused filters) stays in the HUD


@runtime_checkable
class AudioFeed(Protocol):
    """The live show's audio, whichever kind: the engine thread calls `snapshot` and `use_preset`, the main thread
    `tap`, `downbeat`, `warning` and `close`."""

    description: str  # which audio, as `vj live` says at the start
    audio_time: float  # seconds of audio analysed in the newest snapshot (where the analysis of the track stands)
    sample_rate: int  # of the audio analysed

    def observe(self, observer) -> None:
        """Report the audio as analysed to `observer` (a recording): block(samples, position, heard_at) and
        event(kind, position, fields); silence reports nothing (it is analysed by the clock)."""

    def snapshot(self) -> tuple[dict, float]:
        """(variable values now, time.monotonic() when the newest audio in them was heard)."""

    def use_preset(self, preset) -> None:
        """A reloaded preset: new filters or beat options from the next block (a refusal is a `warning`)."""

    def tap(self, at: float) -> None:
        """A tap tempo at time.monotonic() time `at`."""

    def downbeat(self, at: float) -> None:
        """The beat nearest to time.monotonic() time `at` is the first of a bar."""

    @property
    def warning(self) -> str | None:
        """What the HUD should say about the audio now, or None."""

    def close(self) -> None:
        """Stop the input and let its device go."""


def _beat_settings(preset):
    """The preset's `beats` area: Link and the beat tracker are made anew when it changes."""
    return preset.area("beats")


class LinkTempo:
    """`tempo_source: link`: the musical variables from the session; taps propose a tempo to every peer."""

    def __init__(self, preset):
        self.settings = _beat_settings(preset)
        self.clock = LinkClock(
            bpm=min(max(preset.bpm or 120.0, MIN_BPM), MAX_BPM),
            beats_per_bar=preset.beats_per_bar,
            beat_decay=preset.beat_decay,
        )
        self._taps = TapTimes()
        log.info("tempo from Ableton Link (%d other peer(s) now)", self.clock.peers)

    def values(self, values):
        """`values` with the musical variables replaced by Link's, now."""
        return {**values, **self.clock.values()}

    def tap(self, at):
        period = self._taps.add(at)
        if period is not None:
            self.clock.set_tempo(min(max(60.0 / period, MIN_BPM), MAX_BPM))

    def close(self):
        self.clock.close()


class ShowAudio:
    """What the two kinds share: the Link tempo (when the preset asks for it) and its warnings."""

    def __init__(self, preset):
        self.link = LinkTempo(preset) if preset.tempo_source == "link" else None  # LinkError ends the start
        self.description = "?"  # which audio, as `vj live` says at the start (open_audio knows)
        self.audio_time = 0.0
        self._link_warning = None
        self._notice, self._notice_until = None, 0.0

    def _note(self, text):
        """A one-off note for the HUD (and the log), shown for NOTICE_SECONDS."""
        log.warning("%s", text)
        self._notice, self._notice_until = text, time.monotonic() + NOTICE_SECONDS

    def _use_link(self, preset):
        """After a reload: join, leave or re-join the Link session as the new preset says; a failure is a warning
        and the tempo comes from the audio."""
        wanted = preset.tempo_source == "link"
        if self.link is not None and (not wanted or self.link.settings != _beat_settings(preset)):
            self.link.close()
            self.link = None
        self._link_warning = None
        if wanted and self.link is None:
            try:
                self.link = LinkTempo(preset)
            except LinkError as exc:
                self._link_warning = f"{exc}; the tempo comes from the audio"
                log.warning("%s", self._link_warning)

    def _musical(self, values):
        return values if self.link is None else self.link.values(values)

    def _source_warning(self):
        return None

    @property
    def warning(self):
        notice = self._notice if time.monotonic() < self._notice_until else None
        return self._link_warning or notice or self._source_warning()

    def tap(self, at):
        """A tap tempo at time.monotonic() time `at`."""
        if self.link is not None:
            self.link.tap(at)
        else:
            self._tap(at)

    def downbeat(self, at):
        """The beat nearest to time.monotonic() time `at` is the first of a bar (Link's bars are the session's)."""
        if self.link is not None:
            self._note("downbeat: with tempo_source: link the bars are the Link session's")
        else:
            self._downbeat(at)

    def close(self):
        if self.link is not None:
            self.link.close()


class SilentAudio(ShowAudio):
    """No audio input: silence analysed on demand on the engine thread (a fixed `bpm` or Link still beats)."""

    def __init__(self, preset, clock):
        super().__init__(preset)
        self._clock = clock  # the show clock
        self._calls = collections.deque()  # taps and reloads from other threads, applied by `snapshot`
        self._use_analyzer(preset)

    def _use_analyzer(self, preset):
        self.analyzer = AudioAnalyzer.for_preset(SilenceSource(), preset)
        self.sample_rate = self.analyzer.sample_rate
        self._origin = self._clock()  # show time of the analyzer's time 0

    def observe(self, observer):
        pass  # silence, analysed by the clock: a replay analyses silence again

    def snapshot(self):
        while self._calls:
            self._calls.popleft()()
        self.audio_time = self._clock() - self._origin
        values = self.analyzer.advance_to(self.audio_time)
        return self._musical(values), time.monotonic()

    def _show_time(self, at):
        return self._clock() - (time.monotonic() - at)

    def _tap(self, at):
        t = self._show_time(at)
        self._calls.append(lambda: self.analyzer.beats.tap(t - self._origin))

    def _downbeat(self, at):
        t = self._show_time(at)
        self._calls.append(lambda: self.analyzer.beats.downbeat(t - self._origin))

    def use_preset(self, preset):
        """Called on the engine thread (after a reload), like `snapshot`."""
        self._use_link(preset)
        try:
            self._use_analyzer(preset)
        except AudioError as exc:
            self._note(f"audio filters refused: {exc}; the previous ones stay")


class LiveAudio(ShowAudio):
    """A LiveAnalysis of a sound card or a rehearsal file; a reload with new filters or beat options swaps its
    analyzer between two blocks (a locked tempo is kept when only the filters changed)."""

    def __init__(self, source, preset):
        from vj.audio.live_analysis import LiveAnalysis

        super().__init__(preset)
        self.source = source
        self.preset = preset
        self.sample_rate = source.sample_rate
        try:
            self.analysis = LiveAnalysis.for_preset(source, preset)
        except Exception:
            super().close()
            raise

    def snapshot(self):
        snap = self.analysis.snapshot()
        self.audio_time = snap.audio_time
        return self._musical(snap.values), snap.heard_at

    def _source_warning(self):
        return self.analysis.warning

    def observe(self, observer):
        self.analysis.observer = observer

    def _tap(self, at):
        self.analysis.tap(at)

    def _downbeat(self, at):
        self.analysis.downbeat(at)

    def use_preset(self, preset):
        old, self.preset = self.preset, preset
        self._use_link(preset)
        beats_same = _beat_settings(old) == _beat_settings(preset)
        if beats_same and old.input_audio_filters == preset.input_audio_filters:
            return
        try:
            analyzer = AudioAnalyzer.for_preset(self.source, preset)
        except AudioError as exc:  # e.g. a band above this input's Nyquist frequency
            self._note(f"audio filters refused: {exc}; the previous ones stay")
            return
        self.analysis.replace(analyzer, keep_beats=beats_same, preset=preset)
        log.info(
            "audio analysis: %s changed; new analyzer from the next block", "filters" if beats_same else "beat options"
        )

    def close(self):
        self.analysis.close()
        self.source.close()
        super().close()


def open_audio(args, preset, clock):
    """The live audio analysis: a device, a rehearsal file, or silence (`--audio-device none`); its `description`
    says which, for the lines `vj live` prints at the start."""
    if args.audio_device == "none" and not args.audio:
        audio = SilentAudio(preset, clock)
        audio.description = "none (silence: --audio-device none)"
        return audio
    from vj.audio.sources.devices import LiveAudioError
    from vj.audio.sources.file_playback import FilePlayback
    from vj.audio.sources.live_input import LiveInput

    if args.audio:
        try:
            source = FilePlayback(args.audio, playback=not args.no_playback, device=args.audio_output)
        except LiveAudioError as exc:  # only playing needs a device
            # a machine without a sound card (a CI box, a server) can still rehearse: silently, by the clock
            raise LiveAudioError(f"{exc}; to rehearse without playing the file, add --no-playback") from None
        heard = (
            "not played (--no-playback)"
            if args.no_playback
            else f"played on {args.audio_output or 'the default output'}"
        )
        description = f"file {args.audio} ({source.duration:.0f} s, {source.sample_rate} Hz), {heard}"
    else:
        source = LiveInput(
            device=args.audio_device,
            sample_rate=args.sample_rate,
            channels=args.channels,
            blocksize=args.blocksize,
            latency=args.latency,
        )
        description = (
            f"input {args.audio_device or '(the default)'}, channels "
            f"{','.join(map(str, source.channels))} mixed to mono, {source.sample_rate} Hz"
        )
    try:
        audio = LiveAudio(source, preset)
    except Exception:
        source.close()
        raise
    audio.description = description
    return audio
