"""A recording read back (`vj replay`): its preset versions, what happened when, and the live analysis again.

A frame of the live show is rebuilt from what was recorded with it (show time, variables, scene position, the
latent blend's weight) and from the preset version and engine settings in effect before it, so replaying it
through the same engine gives the same pixels. At other frame times (a re-render at another rate) the variables
come from the recorded audio analysed again, with the recorded analyzer changes, taps and downbeats at their
samples; controls, scene changes, presets, blackouts and freezes take effect at their recorded show times.
"""

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vj.audio.analysis import AudioAnalyzer
from vj.audio.sources.files import ArraySource, SilenceSource
from vj.config.loading import PresetError, load_preset_text, with_scene
from vj.show.recordings import layout
from vj.show.recordings.layout import RecordingError
from vj.show.timeline import ScenePosition

READ_CHUNK = 4096  # samples fed to the analyzer at a time (its values do not depend on the blocks)


@dataclass
class Recording:
    """A recording folder: recording.json, the events and frames in order, and the preset texts."""

    folder: Path
    info: dict
    events: list
    frames: list

    @classmethod
    def open(cls, folder):
        folder = Path(folder)
        if not folder.is_dir():
            raise RecordingError(f"recording folder {folder} not found")
        info = layout.read_info(folder)
        frames = layout.read_lines(folder, layout.FRAMES)
        if not frames:
            raise RecordingError(f"{folder} holds no frames: the show was stopped before its first frame")
        missing = {"seq", "index", "clock", "t", "sha256", "variables", "scene", "mix", "version"} - set(frames[0])
        if missing:
            raise RecordingError(f"{folder}/{layout.FRAMES} lacks {', '.join(sorted(missing))}: not vj's recording")
        return cls(folder, info, layout.read_lines(folder, layout.EVENTS), frames)

    @property
    def fps(self):
        return float(self.info["fps"])

    @property
    def audio_start(self):
        """Show time of the first recorded sample (0 without audio)."""
        return float(self.info.get("audio_start") or 0.0)

    @property
    def end(self):
        """Show time after the last recorded frame (its time plus one frame)."""
        return self.frames[-1]["clock"] + 1.0 / self.fps

    def kind(self, *kinds):
        return [e for e in self.events if e.get("kind") in kinds]

    def preset_text(self, version):
        path = self.folder / layout.preset_name(version)
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            raise RecordingError(f"{path} is missing: the recording is incomplete") from None

    def presets(self, overrides=None, strict=False):
        """{version: Preset}: each version as the show had it (a reload's text, or the previous version with a
        typed prompt), parsed with the show's overrides and then `overrides`; relative paths start at the
        original preset's folder."""
        where = Path(self.info.get("preset", "preset.yaml"))
        given = {**self.info.get("overrides", {}), **(overrides or {})}
        strict = strict or bool(self.info.get("strict"))
        versions = {0: load_preset_text(self.preset_text(0), where, given, strict)}
        for event in self.kind("preset", "prompt"):
            version = event["version"]
            try:
                if event["kind"] == "preset":
                    versions[version] = load_preset_text(self.preset_text(version), where, given, strict)
                else:
                    versions[version] = with_scene(versions[version - 1], event["scene"], event["text"])
            except PresetError as exc:
                raise RecordingError(f"preset version {version} of {self.folder}: {str(exc).splitlines()[0]}") from None
        return versions

    def audio(self):
        """(float32 mono samples, sample rate), or (None, rate) when the show had no audio input (silence)."""
        samples, rate = layout.read_audio(self.folder)
        return (samples if len(samples) else None), rate


class RecordedAnalysis:
    """The live show's analysis again: the recorded audio (or silence) fed through the analyzer of version 0,
    swapped, tapped and downbeaten at the recorded samples; `values(sample)` at ascending sample positions."""

    def __init__(self, recording, presets):
        samples, rate = recording.audio()
        self.samples = samples
        self.rate = rate
        self.presets = presets
        source = SilenceSource(rate) if samples is None else ArraySource(samples, rate)
        self.analyzer = AudioAnalyzer.for_preset(source, presets[0])
        self.position = 0
        self.changes = [e for e in recording.kind("analysis")]

    def _feed_to(self, target):
        while self.position < target:
            n = min(READ_CHUNK, target - self.position)
            if self.samples is None:
                block = np.zeros(n, np.float32)
            else:
                block = self.samples[self.position : self.position + n]
                if len(block) < n:  # past the recorded audio: silence, as a source that ended
                    block = np.concatenate((block, np.zeros(n - len(block), np.float32)))
            self.analyzer.feed(block)
            self.position += n

    def _apply(self, change):
        what = change["what"]
        if what == "tap":
            self.analyzer.beats.tap(change["at"])
        elif what == "downbeat":
            self.analyzer.beats.downbeat(change["at"])
        elif what == "analyzer":
            fresh = AudioAnalyzer.for_preset(self.analyzer.source, self.presets[change["version"]])
            if change.get("keep_beats"):
                fresh.take_beats(self.analyzer)
            self.analyzer = fresh

    def values(self, sample):
        """{name: value} once `sample` samples are analysed (the analysis never goes back). A change recorded at
        a sample acts on the audio after it: at that sample the show saw the values before it, and a new
        analyzer's new names as 0 (vj.audio.live_analysis)."""
        while self.changes and self.changes[0]["sample"] < sample:
            change = self.changes.pop(0)
            self._feed_to(change["sample"])
            self._apply(change)
        self._feed_to(sample)
        values = dict(zip(self.analyzer.names, self.analyzer.values.tolist()))
        for change in self.changes:
            if change["sample"] > sample:
                break
            if change["what"] == "analyzer":
                fresh = AudioAnalyzer.for_preset(self.analyzer.source, self.presets[change["version"]])
                values.update({name: 0.0 for name in fresh.names if name not in values})
        return values

    def at(self, t):
        """The values at `t` seconds of the recorded audio."""
        return self.values(int(round(t * self.rate)))


class RecordedTimeline:
    """What was in effect at a show time, from the recorded events: preset version, scene position, controls,
    blackout and freeze."""

    def __init__(self, recording, presets):
        self.presets = presets
        versions = recording.kind("preset", "prompt")
        self._version_times = [e["t"] for e in versions]
        self._versions = [e["version"] for e in versions]
        scenes = recording.kind("scene")
        self._scene_times = [e["t"] for e in scenes]
        self._scenes = [(e["from"], e["to"]) for e in scenes]
        self._frame_times = [f["clock"] for f in recording.frames]
        self._frames = recording.frames
        self.blackout = self._toggles(recording, "Blackout")
        self.freeze = self._toggles(recording, "Freeze")

    @staticmethod
    def _toggles(recording, name):
        """[(time, on)] of a main-thread toggle (on: None toggles)."""
        state, out = False, []
        for e in recording.kind("action"):
            if e.get("action") == name:
                on = e["fields"].get("on")
                state = (not state) if on is None else bool(on)
                out.append((e["t"], state))
        return out

    @staticmethod
    def _state(toggles, t):
        state = False
        for at, on in toggles:
            if at > t:
                break
            state = on
        return state

    def is_blackout(self, t):
        return self._state(self.blackout, t)

    def is_frozen(self, t):
        return self._state(self.freeze, t)

    def version(self, t):
        i = bisect.bisect_right(self._version_times, t)
        return 0 if i == 0 else self._versions[i - 1]

    def preset(self, t):
        return self.presets[self.version(t)]

    def position(self, t):
        """The ScenePosition at show time t, as the live scene triggers gave it."""
        i = bisect.bisect_right(self._scene_times, t)
        if i == 0:
            return ScenePosition(0)
        started, (before, after) = self._scene_times[i - 1], self._scenes[i - 1]
        into = t - started
        fade = self.preset(t).transition_time
        if fade <= 0 or into >= fade:
            return ScenePosition(after)
        return ScenePosition(after, before, max(0.0, into) / fade)

    def controls(self, t, names):
        """The controls' values the newest recorded frame at or before t had (none before the first frame)."""
        i = bisect.bisect_right(self._frame_times, t)
        if i == 0:
            return {}
        variables = self._frames[i - 1]["variables"]
        return {name: variables[name] for name in names if name in variables}
