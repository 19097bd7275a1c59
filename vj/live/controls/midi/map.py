"""The MIDI map of a live show: which control each knob (channel, cc) sets and which action each note triggers.

It is built from the preset's `midi` section plus the bindings learned during shows (vj.live.controls.midi.learned).
"""

import logging

from vj.config.live_keys import MidiSection
from vj.live.controls.actions import (
    Blackout,
    Downbeat,
    Freeze,
    JumpScene,
    NextScene,
    PreviousScene,
    QueueScene,
    TapTempo,
    ToggleHud,
)
from vj.live.controls.midi.learned import add_binding, learned_path, load_learned

log = logging.getLogger(__name__)

_SIMPLE_ACTIONS = {
    "next_scene": NextScene,
    "previous_scene": PreviousScene,
    "blackout": Blackout,
    "freeze": Freeze,
    "tap_tempo": TapTempo,
    "downbeat": Downbeat,
    "hud": ToggleHud,
}


def note_action(binding):
    """The action a note binding triggers (scenes are numbered from 1 in presets, from 0 in actions)."""
    if binding.action == "scene":
        return JumpScene(binding.scene - 1)
    if binding.action == "queue":
        return QueueScene(binding.scene - 1)
    return _SIMPLE_ACTIONS[binding.action]()


class MidiMap:
    """Which control each (channel, cc) sets and which action each (channel, note) triggers; channels 1-16.

    `learned` CC bindings replace the section's bindings of the same control or the same (channel, cc). A map
    never changes: learning makes a new one (`with_learned`), so the reader thread can swap it atomically.
    """

    def __init__(self, section=None, learned=(), learned_path=None, warnings=()):
        self.section = section or MidiSection()
        self.learned = tuple(learned)
        self.learned_path = learned_path
        self.warnings = tuple(warnings)
        bindings = ()
        for binding in (*self.section.cc, *self.learned):
            bindings = add_binding(bindings, binding)
        self.cc = {(b.channel, b.cc): b.control for b in bindings}
        self.notes = {(n.channel, n.note): note_action(n) for n in self.section.notes}

    @classmethod
    def for_preset(cls, preset):
        """The map of a loaded preset: its `midi` section and the bindings learned beside its file (logged warnings
        for anything unusable there)."""
        path = learned_path(preset.path) if preset.path else None
        learned, warnings = load_learned(path, preset.control_names) if path else ((), [])
        for warning in warnings:
            log.warning("%s", warning)
        return cls(preset.midi, learned, path, warnings)

    def with_learned(self, binding):
        """A new map with `binding` learned."""
        return MidiMap(self.section, add_binding(self.learned, binding), self.learned_path, self.warnings)
