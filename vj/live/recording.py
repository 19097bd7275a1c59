"""`vj live --record DIR`: what the show did, written as it runs (vj.show.recordings.writer), so that `vj replay DIR`
renders the same frames again, or the performance at another quality.

The engine thread reports each frame (its time, variables, scene position and digest) and what changed before it
(preset versions, typed prompts, actions, scene changes, engine settings); the analysis thread the audio exactly
as analysed and what changed the analysis (taps, downbeats, a new analyzer) at its sample; the main thread the
frames as shown. Every report only copies and queues: the writer thread does the rest.
"""

import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np

from vj.show.recordings.writer import Recorder


def digest(rgb):
    """The sha256 hex digest of a frame's H×W×3 uint8 RGB bytes (frames.jsonl's `sha256`)."""
    return hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).hexdigest()


def _plain(value):
    """A recorded number as JSON writes it exactly (a float's repr round-trips)."""
    return float(value) if isinstance(value, (float, np.floating)) else value


def action_record(action):
    """An action as an event: its class name and fields."""
    fields = dataclasses.asdict(action) if dataclasses.is_dataclass(action) else {}
    return {"action": type(action).__name__, "fields": {k: _plain(v) for k, v in fields.items()}}


class ShowRecording:
    """The live show's side of a recording: `frame`, `changes`, `action` (engine thread), `block`, `event`
    (analysis thread, as its observer), `shown` and `display_action` (main thread)."""

    def __init__(self, recorder, preset_text, started_at):
        self.recorder = recorder
        self.started_at = started_at  # time.monotonic() of show time 0
        self.version = 0  # the preset version in effect
        self._versions = {}  # id(Preset) -> version, for the analysis thread's "new analyzer" events
        self.seq = 0  # the sequence number of the next frame rendered
        self._audio_started = False
        self._shown = None  # the picture on screen: shown again at the end, so show.mp4 lasts as long as the show
        recorder.preset(0, preset_text)

    @classmethod
    def start(cls, folder, info, preset_text, sample_rate, fps, started_at):
        return cls(Recorder(Path(folder), info, sample_rate, fps), preset_text, started_at)

    @property
    def warning(self):
        return self.recorder.warning

    def stats(self):
        return self.recorder.stats()

    def close(self):
        if self._shown is not None:
            self.recorder.shown(self._shown, time.monotonic() - self.started_at)
        self.recorder.close()

    def _event(self, kind, **fields):
        self.recorder.event({"kind": kind, "before": self.seq, **fields})

    # -- the engine thread -----------------------------------------------------------------------------------
    def settings(self, settings, why):
        """The engine was (re)made with `settings` (the start, a reload that changed them, out of memory)."""
        self._event("settings", why=why, settings={k: _plain(v) for k, v in dataclasses.asdict(settings).items()})

    def preset_used(self, preset):
        """The state's preset changed (hot reload or typed prompt, recorded by `changes`): note its version."""
        self._versions[id(preset)] = self.version

    def changes(self, changes, t):
        """The preset changes a ShowState took since the last frame, each a new version."""
        for change in changes:
            self.version += 1
            if change[0] == "reload":
                self.recorder.preset(self.version, change[1])
                self._event("preset", t=t, version=self.version)
            else:
                _, scene, text = change
                self._event("prompt", t=t, version=self.version, scene=scene, text=text)

    def action(self, action, source, t):
        """An action the engine thread applied (scene changes, prompts, controls, reloads ...)."""
        self._event("action", t=t, source=source, **action_record(action))

    def scenes(self, begun):
        """Scene changes that began: (from, to, show time of the start)."""
        for before, after, started in begun:
            self._event("scene", t=float(started), **{"from": before, "to": after})

    def frame(self, request, rgb, now, position, inputs, audio_time):
        """A frame rendered and published: made for show time `now` with the variables of `audio_time`."""
        self.recorder.frame(
            {
                "seq": self.seq,
                "index": request.index,
                "clock": float(now),
                "t": float(audio_time),
                "sha256": digest(rgb),
                "variables": {k: _plain(v) for k, v in inputs.items()},
                "scene": position.scene,
                "previous": position.previous,
                "mix": float(position.mix),
                "guide_weight": float(request.guide_weight),
                "version": self.version,
            }
        )
        self.seq += 1

    # -- the analysis thread (LiveAnalysis.observer) -------------------------------------------------------------
    def block(self, samples, position, heard_at):
        if not self._audio_started:  # show time of sample 0: the first block ended when it was heard
            self._audio_started = True
            rate = self.recorder.sample_rate
            self.recorder.audio_start(heard_at - self.started_at - (position + len(samples)) / rate)
        self.recorder.audio(samples)

    def event(self, kind, position, fields):
        fields = dict(fields)
        preset = fields.pop("preset", None)
        if preset is not None:
            fields["version"] = self._versions.get(id(preset), self.version)
        self.recorder.event({"kind": "analysis", "what": kind, "sample": position, **fields})

    # -- the main thread -------------------------------------------------------------------------------------
    def shown(self, rgb, t):
        self._shown = rgb
        self.recorder.shown(rgb, t)

    def display_action(self, action, t):
        """Blackout, freeze, taps and downbeats: they change what is shown or heard, not the engine's frames."""
        self._event("action", t=t, source="show", **action_record(action))
