"""The MIDI input of a live show: one port read on its own thread, its messages put on the ActionBus as actions.

A MidiInput maps knobs (CC) and notes through a MidiMap, learns bindings (saved beside the preset), and treats a
missing or unplugged port as a warning, never an error: it is opened again when it comes back. Knobs use pickup
(soft takeover): a knob moves its control only once it has reached the control's current value, so values never
jump.
"""

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from vj.config.live_keys import CCBinding
from vj.live.controls.actions import Downbeat, RateLimitedLog, SetControl, TapTempo
from vj.live.controls.midi.learned import save_learned
from vj.live.controls.midi.ports import midi_port_names, open_matching_input

log = logging.getLogger(__name__)

PICKUP_TOLERANCE = 2 / 127  # a knob this close to the control's position picks it up
POLL_INTERVAL = 0.002  # seconds between polls of an idle port (mido's own blocking receive polls at 1 ms)
OWNED_VALUES = 256  # values a knob set that the show may not have applied yet


@dataclass
class _Knob:
    """Pickup state of the knob bound to one control."""

    position: float | None = None  # the knob's last position 0..1 (None: not moved yet)
    spec: object = None  # the control's spec when the knob picked it up (None: not picked up)
    owned: deque = field(default_factory=lambda: deque(maxlen=OWNED_VALUES))


def _picked(knob, spec, current):
    """Whether the knob still holds its control: picked up, same spec (no reload changed it) and the control's
    value is one this knob set (or the one it picked up at): any other value was set elsewhere (OSC, reload)."""
    return knob.spec is not None and knob.spec == spec and current in knob.owned


def _data(value, hi):
    """A MIDI data value checked to be an integer in 0..hi."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise ValueError(f"value {value!r} outside 0..{hi}")
    return value


class MidiInput:
    """Reads one MIDI input port on its own thread and puts actions on `bus` (source 'midi').

    `open_port(substring)` returns an open mido input port or raises (default: `open_matching_input`, with mido's
    rtmidi backend). A port that cannot be opened, or is lost, sets `warning` (for the HUD, also logged) and is
    tried again every `retry_interval` seconds. A lost port is one that closes, fails to read, or whose name
    `list_names()` no longer returns (an unplugged rtmidi port stays open but silent; default `midi_port_names`
    when `open_port` is the default). `clock()`, if given, stamps taps and downbeats with the show time as they
    arrive, instead of when the show applies them. Control values and specs are read from `controls`.
    """

    def __init__(
        self,
        port_name_substring,
        midi_map,
        controls,
        bus,
        open_port=None,
        *,
        list_names=None,
        clock=None,
        retry_interval=1.0,
    ):
        if open_port is None:
            open_port, list_names = open_matching_input, list_names or midi_port_names
        self.substring = port_name_substring
        self._map = midi_map
        self._controls = controls
        self._bus = bus
        self._open_port = open_port
        self._list_names = list_names
        self._clock = clock
        self._retry = retry_interval
        self._lock = threading.Lock()  # the map, knobs and learning: reader thread vs. show and HUD
        self._stop = threading.Event()
        self._knobs = {}
        self._learning = None
        self._malformed = RateLimitedLog(log, "malformed MIDI message")
        self._port = None
        self.port_name = None
        self.warning = None
        self._connect()
        self._thread = threading.Thread(target=self._run, name="vj-midi", daemon=True)
        self._thread.start()

    # --- the show's side ----------------------------------------------------------------------------------

    @property
    def midi_map(self):
        """The map in use (learning replaces it)."""
        return self._map

    def set_map(self, midi_map):
        """Use a new map (after a preset reload: `MidiMap.for_preset(new_preset)`)."""
        with self._lock:
            self._map = midi_map

    @property
    def dropped(self):
        """How many malformed messages were dropped."""
        return self._malformed.total

    @property
    def learning(self):
        """The control the next CC will be bound to, or None."""
        return self._learning

    def learn(self, name):
        """MIDI learn: the next CC message binds its (channel, cc) to control `name` and saves the learned file;
        None stops learning. Returns False (and logs why) if `name` is not a control."""
        if name is not None and name not in self._controls.specs:
            log.warning(
                "MIDI learn: '%s' is not a control (controls: %s)", name, ", ".join(self._controls.specs) or "none"
            )
            return False
        with self._lock:
            self._learning = name
        if name is not None:
            log.info("MIDI learn: move a knob or fader to bind it to '%s'", name)
        return True

    def waiting_for_pickup(self):
        """{control: (knob position, control position)} for each knob moved but not holding its control (for the
        HUD: turn the knob toward the control's position to pick it up)."""
        out = {}
        with self._lock:
            for name, knob in self._knobs.items():
                spec, current = self._controls.specs.get(name), self._controls.values.get(name)
                if (
                    spec is not None
                    and current is not None
                    and knob.position is not None
                    and not _picked(knob, spec, current)
                ):
                    out[name] = (knob.position, spec.position(current))
        return out

    def close(self):
        """Stop the reader thread and close the port."""
        self._stop.set()
        self._thread.join(timeout=5)
        port, self._port = self._port, None
        if port is not None:
            self._close_port(port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the reader thread ---------------------------------------------------------------------------------

    def _run(self):
        next_check = time.monotonic() + self._retry
        while not self._stop.is_set():
            port = self._port
            if port is None:
                if not self._stop.wait(self._retry):
                    self._connect()
                continue
            try:
                message = port.poll()
            except Exception as exc:  # any backend failure means the port is gone; logged by _lost
                self._lost(f"read failed: {exc}")
                continue
            if message is not None:
                self._handle(message)
            elif port.closed:
                self._lost("port closed")
            elif self._list_names is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._retry
                if not self._listed(port):
                    self._lost("unplugged")
            else:
                self._stop.wait(POLL_INTERVAL)

    def _listed(self, port):
        try:
            return port.name in self._list_names()
        except Exception as exc:  # a backend that stopped working: the port is gone with it
            log.debug("MIDI: listing ports failed: %s", exc)
            return False

    def _warn(self, text):
        if text != self.warning:
            log.warning("%s", text)
        self.warning = text

    def _connect(self):
        try:
            port = self._open_port(self.substring)
        except Exception as exc:  # no port or no backend: the show goes on without MIDI until it appears
            self._warn(f"MIDI: {exc}; retrying every {self._retry:g} s")
            return
        self._port, self.port_name = port, getattr(port, "name", None) or repr(port)
        if self.warning is not None:
            log.warning("MIDI: listening on '%s' again", self.port_name)
        else:
            log.info("MIDI: listening on '%s'", self.port_name)
        self.warning = None

    def _lost(self, reason):
        port, name = self._port, self.port_name
        self._port = self.port_name = None
        self._close_port(port)
        self._warn(f"MIDI: input '{name}' lost ({reason}); retrying every {self._retry:g} s")

    @staticmethod
    def _close_port(port):
        try:
            port.close()
        except Exception as exc:  # closing a port whose device is gone may fail; it is dropped either way
            log.debug("MIDI: closing the port failed: %s", exc)

    def _handle(self, message):
        try:
            kind = message.type
            if kind == "control_change":
                self._cc(_data(message.channel, 15) + 1, _data(message.control, 127), _data(message.value, 127))
            elif kind == "note_on" and _data(message.velocity, 127) > 0:
                self._note(_data(message.channel, 15) + 1, _data(message.note, 127))
            # every other message (note off, clock, sysex, ...) is simply not mapped
        except (AttributeError, TypeError, ValueError) as exc:
            self._malformed.drop(f"{message!r}: {exc}")

    def _note(self, channel, note):
        action = self._map.notes.get((channel, note))
        if action is None:
            return
        if self._clock is not None and isinstance(action, (TapTempo, Downbeat)):
            action = type(action)(self._clock())
        self._bus.put(action, "midi")

    def _cc(self, channel, number, value):
        position = value / 127
        with self._lock:
            if self._learning is not None:
                learned = self._bind(channel, number, position)
                action = None
            else:
                learned = None
                action = self._knob_moved(self._map.cc.get((channel, number)), position)
        if action is not None:
            self._bus.put(action, "midi")
        if learned is not None:
            self._save(*learned)

    def _knob_moved(self, name, position):
        """The SetControl for a knob of control `name` moved to `position`, or None while it waits for pickup."""
        spec, current = self._controls.specs.get(name), self._controls.values.get(name)
        if spec is None or current is None:  # unmapped, or a control a reload removed
            return None
        knob = self._knobs.setdefault(name, _Knob())
        if not _picked(knob, spec, current):
            knob.spec = None
            target, before = spec.position(current), knob.position
            if abs(position - target) <= PICKUP_TOLERANCE or (
                before is not None and (before - target) * (position - target) <= 0
            ):
                knob.spec = spec
                knob.owned.clear()
                knob.owned.append(current)
        knob.position = position
        if knob.spec is None:
            return None
        value = min(max(spec.value(position), spec.lo), spec.hi)
        knob.owned.append(value)
        return SetControl(name, value)

    def _bind(self, channel, number, position):
        """Learn (channel, number) for the control being learned; returns what to save and log."""
        binding = CCBinding(channel=channel, cc=number, control=self._learning)
        self._map = self._map.with_learned(binding)
        self._knobs[binding.control] = _Knob(position=position)  # the new knob picks up like any other
        self._learning = None
        return binding, self._map

    @staticmethod
    def _save(binding, midi_map):
        what = f"channel {binding.channel} CC {binding.cc} -> '{binding.control}'"
        if midi_map.learned_path is None:
            log.warning("MIDI learn: %s (not saved: the preset has no file)", what)
            return
        try:
            save_learned(midi_map.learned_path, midi_map.learned)
        except OSError as exc:
            log.error("MIDI learn: %s, but cannot save %s: %s", what, midi_map.learned_path, exc)
            return
        log.info("MIDI learn: %s (saved to %s)", what, midi_map.learned_path)
