"""The preset keys of live shows, defined once: the `midi` section's bindings and the scene quantization.

The schema checks presets against them and the live code (vj.live.controls.midi, vj.live.scene_triggers) acts on
them; this module imports neither side, so `vj check` never loads the MIDI port code or the live show.
"""

import math
from dataclasses import dataclass

from vj.config.keys import POSITIVE_INTEGER, REQUIRED, TEXT, choice, in_range, key, keys, list_of, optional

QUANTIZE = ("none", "beat", "bar")  # when a live scene change starts (vj.live.scene_triggers.next_boundary)
NOTE_ACTIONS = ("next_scene", "previous_scene", "scene", "queue", "blackout", "freeze", "tap_tempo", "downbeat", "hud")
SCENE_ACTIONS = ("scene", "queue")  # the note actions that take a scene
CHANNEL = in_range(1, 16, integer=True)


@dataclass(frozen=True, kw_only=True)
class CCBinding:
    """One item of `midi.cc`: a knob or fader (channel, controller number) that sets a control."""

    channel: int = key(CHANNEL, 1, "MIDI channel")
    cc: int = key(in_range(0, 127, integer=True), REQUIRED, "controller number")
    control: str = key(
        TEXT,
        REQUIRED,
        "the control it sets (a `name` from `controls`); its range 0..127 maps to the control's knob position 0..1",
    )


@dataclass(frozen=True, kw_only=True)
class NoteBinding:
    """One item of `midi.notes`: a note or pad (channel, note number) that triggers a show action."""

    channel: int = key(CHANNEL, 1, "MIDI channel")
    note: int = key(in_range(0, 127, integer=True), REQUIRED, "note number (60: middle C)")
    action: str = key(
        choice(*NOTE_ACTIONS),
        REQUIRED,
        "what a note-on does: `next_scene` (the queued one if any), `previous_scene`, `scene` (go to "
        "`scene`), `queue` (make `scene` the next one), `blackout` and `freeze` (toggles), "
        "`tap_tempo`, `downbeat` (this beat is a bar's first), `hud` (show or hide it)",
    )
    scene: int | None = key(optional(POSITIVE_INTEGER), None, "scene number (1 = the first) for `scene` and `queue`")


@dataclass(frozen=True)
class MidiSection:
    """The preset's `midi` mapping, checked: CC bindings and note bindings."""

    cc: tuple = key(
        list_of(CCBinding, "list of `{channel, cc, control}`", "{channel: 1, cc: 21, control: zoom}"),
        (),
        "knobs and faders: each sets a control",
    )
    notes: tuple = key(
        list_of(NoteBinding, "list of `{channel, note, action, scene}`", "{channel: 1, note: 36, action: next_scene}"),
        (),
        "notes and pads: each triggers an action",
    )


CC_FIELDS = keys(CCBinding)


# a control's knob curve: position p (0..1) to value
CURVES = ("linear", "exponential", "square")


@dataclass(frozen=True)
class ControlSpec:
    """One control: its variable name, default value, range [lo, hi] and knob curve."""

    name: str
    default: float = 0.0
    lo: float = 0.0
    hi: float = 1.0
    curve: str = "linear"

    def value(self, position):
        """The value at knob position 0..1 (clamped)."""
        p = min(max(float(position), 0.0), 1.0)
        if self.curve == "exponential":
            return self.lo * (self.hi / self.lo) ** p
        if self.curve == "square":
            return self.lo + p * p * (self.hi - self.lo)
        return self.lo + p * (self.hi - self.lo)

    def position(self, value):
        """The knob position 0..1 of `value` (the inverse of `value`, clamped to the range)."""
        v = min(max(float(value), self.lo), self.hi)
        if self.hi == self.lo:
            return 0.0
        if self.curve == "exponential":
            return math.log(v / self.lo) / math.log(self.hi / self.lo)
        p = (v - self.lo) / (self.hi - self.lo)
        return math.sqrt(p) if self.curve == "square" else p

    def accepts(self, value):
        """Whether `value` is a finite number inside the range (OSC drops the others)."""
        return isinstance(value, (int, float)) and math.isfinite(value) and self.lo <= value <= self.hi
