"""MIDI input through mido port objects (this machine has no ALSA sequencer): knobs to SetControl with each curve,
notes to actions, pickup, MIDI learn and its file, port loss and reconnection, bad messages."""

import logging
import threading
from types import SimpleNamespace

import mido
import pytest
import yaml

import vj.live.controls.midi.ports as ports_module

from vj.live.controls.actions import (
    Blackout,
    Downbeat,
    Freeze,
    JumpScene,
    NextScene,
    PreviousScene,
    QueueScene,
    SetControl,
    TapTempo,
    ToggleHud,
)
from recording_bus import RecordingBus
from vj.config.live_keys import ControlSpec
from vj.live.controls.controls import Controls
from vj.live.controls.midi.input import MidiInput
from vj.live.controls.midi.learned import learned_path, load_learned, save_learned
from vj.live.controls.midi.map import MidiMap
from vj.live.controls.midi.ports import MidiError, midi_port_names, open_matching_input
from vj.config.loading import load_preset
from vj.config.live_keys import CCBinding, MidiSection, NoteBinding


class KnobPort(mido.ports.BaseInput):
    """An input port the test plays into, as a USB controller's port is to vj."""

    def feed(self, *messages):
        with self._lock:
            self._messages.extend(messages)


def cc(control, value, channel=0):
    return mido.Message("control_change", channel=channel, control=control, value=value)


def note(number, velocity=100, channel=0):
    return mido.Message("note_on", channel=channel, note=number, velocity=velocity)


# The fence: a knob of its own control, always at 0. Messages are handled in order, so once the fence's action
# has arrived every message fed before it has been handled, including those that make no action.
FENCE = SetControl("fence", 0.0)


def fenced(port, bus, *messages):
    """Feed `messages` and the fence; returns the actions they made."""
    before = len(bus.seen)
    port.feed(*messages, cc(127, 0, channel=15))
    actions = bus.wait_until(lambda actions: FENCE in actions[before:])
    return actions[before : actions.index(FENCE, before)]


SPECS = (
    ControlSpec("lin", 0.0, 0.0, 1.0, "linear"),
    ControlSpec("expo", 0.1, 0.1, 10.0, "exponential"),
    ControlSpec("sq", -2.0, -2.0, 2.0, "square"),
    ControlSpec("zoom", 0.5, 0.0, 1.0, "linear"),
    ControlSpec("fence"),
)
SECTION = MidiSection(
    cc=(
        CCBinding(cc=1, control="lin"),
        CCBinding(cc=2, control="expo"),
        CCBinding(cc=3, control="sq"),
        CCBinding(channel=2, cc=1, control="zoom"),
        CCBinding(channel=16, cc=127, control="fence"),
    ),
    notes=tuple(
        NoteBinding(**n)
        for n in [
            dict(note=36, action="next_scene"),
            dict(note=37, action="previous_scene"),
            dict(note=38, action="scene", scene=3),
            dict(note=39, action="queue", scene=1),
            dict(note=40, action="blackout"),
            dict(note=41, action="freeze"),
            dict(note=42, action="tap_tempo"),
            dict(note=43, action="downbeat"),
            dict(channel=16, note=44, action="hud"),
        ]
    ),
)


@pytest.fixture
def start():
    """start(midi_map=..., controls=..., open_port=..., **kw) -> (MidiInput, port, bus); closed after the test."""
    opened = []

    def make(midi_map=None, controls=None, open_port=None, **kw):
        port = KnobPort("Knobs MIDI 1")
        bus = RecordingBus()
        midi = MidiInput(
            "Knobs",
            midi_map or MidiMap(SECTION),
            controls or Controls(SPECS),
            bus,
            open_port or (lambda substring: port),
            **kw,
        )
        opened.append(midi)
        return midi, port, bus

    yield make
    for midi in opened:
        midi.close()


def test_knobs_set_controls_through_each_curve(start):
    midi, port, bus = start()
    assert midi.warning is None and midi.port_name == "Knobs MIDI 1"
    actions = fenced(
        port, bus, cc(1, 0), cc(1, 64), cc(1, 127), cc(2, 0), cc(2, 64), cc(2, 127), cc(3, 0), cc(3, 64), cc(3, 127)
    )
    p = 64 / 127
    assert actions == [
        SetControl("lin", 0.0),
        SetControl("lin", pytest.approx(p)),
        SetControl("lin", 1.0),
        SetControl("expo", 0.1),
        SetControl("expo", pytest.approx(0.1 * 100**p)),
        SetControl("expo", pytest.approx(10.0)),
        SetControl("sq", -2.0),
        SetControl("sq", pytest.approx(-2 + 4 * p * p)),
        SetControl("sq", 2.0),
    ]
    assert all(source == "midi" for _, source in bus.seen)
    assert bus.active("midi")


def test_notes_trigger_actions_and_everything_else_is_ignored(start):
    midi, port, bus = start(clock=lambda: 12.5)
    actions = fenced(
        port,
        bus,
        *(note(n) for n in range(36, 44)),
        note(44, channel=15),
        note(36, velocity=0),
        mido.Message("note_off", note=36),
        note(36, channel=1),
        note(50),
        cc(9, 100),
        mido.Message("clock"),
        mido.Message("pitchwheel", pitch=100),
        mido.Message("sysex", data=[1, 2]),
    )
    assert actions == [
        NextScene(),
        PreviousScene(),
        JumpScene(2),
        QueueScene(0),
        Blackout(),
        Freeze(),
        TapTempo(12.5),
        Downbeat(12.5),
        ToggleHud(),
    ]


def test_taps_without_a_clock_are_stamped_by_the_show(start):
    midi, port, bus = start()
    assert fenced(port, bus, note(42), note(43)) == [TapTempo(), Downbeat()]


def test_pickup_waits_until_the_knob_reaches_the_value(start):
    controls = Controls(SPECS)
    midi, port, bus = start(controls=controls)
    knob = lambda value: cc(1, value, channel=1)  # noqa: E731 -- zoom's knob, zoom is at 0.5
    assert fenced(port, bus, knob(0), knob(30)) == []
    assert midi.waiting_for_pickup() == {"zoom": (30 / 127, 0.5)}
    assert fenced(port, bus, knob(100), knob(90)) == [SetControl("zoom", 100 / 127), SetControl("zoom", 90 / 127)]
    assert midi.waiting_for_pickup() == {}
    # within 2/127 of the value picks up at once; 3/127 away does not
    midi2, port2, bus2 = start(controls=Controls(SPECS))
    assert fenced(port2, bus2, cc(1, 66, channel=1)) == []
    assert fenced(port2, bus2, cc(1, 65, channel=1)) == [SetControl("zoom", 65 / 127)]


def test_pickup_applies_again_after_the_control_is_set_elsewhere(start):
    controls = Controls(SPECS)
    midi, port, bus = start(controls=controls)
    knob = lambda value: cc(1, value, channel=1)  # noqa: E731
    assert fenced(port, bus, knob(64), knob(70), knob(80)) == [SetControl("zoom", v / 127) for v in (64, 70, 80)]
    controls.set("zoom", 70 / 127)  # the show applied an older value: still this knob's
    assert fenced(port, bus, knob(81)) == [SetControl("zoom", 81 / 127)]
    controls.set("zoom", 81 / 127)
    controls.set("zoom", 0.1)  # OSC moved it
    assert fenced(port, bus, knob(82)) == []
    assert midi.waiting_for_pickup() == {"zoom": (82 / 127, pytest.approx(0.1))}
    assert fenced(port, bus, knob(5)) == [SetControl("zoom", 5 / 127)]  # crossed 0.1 on the way down
    controls.set("zoom", 5 / 127)
    # a reload changed its range: same value, new knob position
    controls.respec([s if s.name != "zoom" else ControlSpec("zoom", 0.5, 0.0, 2.0) for s in SPECS])
    assert fenced(port, bus, knob(6)) == []
    assert fenced(port, bus, knob(2)) == [SetControl("zoom", pytest.approx(2 * 2 / 127))]


def test_learn_binds_the_next_knob_saves_it_and_the_next_run_loads_it(tmp_path, start, caplog):
    preset_path = tmp_path / "show.yaml"
    preset_path.write_text(
        "scenes: a\ncontrols: [{name: zoom, default: 0.5}, {name: hue}]\nmidi: {cc: [{cc: 21, control: zoom}]}\n"
    )
    preset = load_preset(preset_path)
    controls = Controls(preset.controls)
    midi, port, bus = start(MidiMap.for_preset(preset), controls)
    caplog.set_level(logging.INFO, logger="vj.live.controls.midi.input")
    assert midi.learn("hue") and midi.learning == "hue"
    port.feed(cc(40, 90, channel=3), cc(40, 0, channel=3))  # binds; then hue (at 0) is picked up at 0
    assert bus.first(1) == [SetControl("hue", 0.0)]
    assert midi.learning is None and midi.midi_map.cc == {(1, 21): "zoom", (4, 40): "hue"}
    saved = yaml.safe_load((tmp_path / "show.midi.yaml").read_text())
    assert saved == {"cc": [{"channel": 4, "cc": 40, "control": "hue"}]}
    assert "channel 4 CC 40 -> 'hue' (saved to" in caplog.text
    # zoom learned on another knob: the preset's knob of zoom (cc 21) no longer moves it
    midi.learn("zoom")
    port.feed(cc(22, 64), cc(21, 64), cc(22, 64))
    assert bus.first(2)[1] == SetControl("zoom", 64 / 127)
    assert midi.midi_map.cc == {(4, 40): "hue", (1, 22): "zoom"}
    # the next run: the learned file beside the preset is read with it
    again = MidiMap.for_preset(load_preset(preset_path))
    assert again.cc == {(4, 40): "hue", (1, 22): "zoom"} and again.warnings == ()


def test_learned_binding_replaces_the_one_on_the_same_knob(tmp_path):
    section = MidiSection(cc=(CCBinding(cc=21, control="zoom"), CCBinding(cc=22, control="hue")))
    learned = (CCBinding(cc=21, control="hue"),)
    assert MidiMap(section, learned).cc == {(1, 21): "hue"}
    relearned = MidiMap(section, learned).with_learned(CCBinding(cc=5, control="zoom"))
    assert relearned.cc == {(1, 21): "hue", (1, 5): "zoom"}
    assert relearned.learned == (*learned, CCBinding(cc=5, control="zoom"))
    path = tmp_path / "a.midi.yaml"
    save_learned(path, learned)
    assert load_learned(path, ("hue",)) == (learned, [])


def test_learn_refuses_unknown_controls_and_can_be_stopped(start, caplog):
    midi, port, bus = start()
    assert not midi.learn("nope") and midi.learning is None
    assert "'nope' is not a control (controls: lin, expo, sq, zoom, fence)" in caplog.text
    midi.learn("lin")
    midi.learn(None)
    assert fenced(port, bus, cc(1, 0)) == [SetControl("lin", 0.0)]
    assert midi.midi_map.cc[(1, 1)] == "lin"


def test_learn_without_a_writable_file_keeps_the_binding_and_logs(tmp_path, start, caplog):
    midi, port, bus = start(MidiMap(SECTION, learned_path=tmp_path / "missing" / "x.midi.yaml"))
    midi.learn("lin")
    assert fenced(port, bus, cc(99, 0)) == []
    assert midi.midi_map.cc[(1, 99)] == "lin"
    assert "cannot save" in caplog.text and "x.midi.yaml" in caplog.text


def test_learned_path_and_damaged_learned_files(tmp_path):
    assert learned_path(tmp_path / "show.yaml") == tmp_path / "show.midi.yaml"
    path = tmp_path / "show.midi.yaml"
    assert load_learned(path, ("zoom",)) == ((), [])
    path.write_text("cc: [")
    (bindings, [warning]) = load_learned(path, ("zoom",))
    assert bindings == () and warning.startswith(f"{path}: cannot read learned MIDI bindings") and "\n" not in warning
    path.write_text("- 1\n")
    assert "expected `cc: [" in load_learned(path, ("zoom",))[1][0]
    path.write_text(
        "cc:\n- {channel: 1, cc: 5, control: zoom}\n- {channel: 20, cc: 5, control: zoom}\n"
        "- {cc: 6, control: gone}\n- {cc: 7, control: zoom, x: 1}\n- 3\n"
    )
    bindings, warnings = load_learned(path, ("zoom",))
    assert bindings == (CCBinding(channel=1, cc=5, control="zoom"),)
    assert warnings == [
        f"{path}: cc[1]: channel: must be between 1 and 16, got 20; ignored",
        f"{path}: cc[2]: control 'gone' is not in the preset; ignored",
        f"{path}: cc[3]: unknown key 'x'; valid keys: channel, cc, control; ignored",
        f"{path}: cc[4]: expected a mapping like {{channel: 1, cc: 21, control: zoom}}; ignored",
    ]


def test_malformed_messages_are_dropped_and_logged(start, caplog):
    midi, port, bus = start()
    bad = [
        SimpleNamespace(type="control_change", channel=0, control=1),
        SimpleNamespace(type="note_on"),
        SimpleNamespace(type="control_change", channel=0, control=1, value=300),
        object(),
    ]
    assert fenced(port, bus, *bad, cc(1, 0)) == [SetControl("lin", 0.0)]
    assert midi.dropped == 4
    assert "malformed MIDI message dropped" in caplog.text


class Opener:
    """An injected open_port: each call takes the next of `results` (a port, or an exception to raise)."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls = []  # (substring, the MidiInput's warning at the time)
        self.midi = None
        self._attached = threading.Event()
        self._changed = threading.Condition()

    def attach(self, midi):
        """Retries (calls after the first, made in the constructor) wait for this, to see `midi.warning`."""
        self.midi = midi
        self._attached.set()

    def __call__(self, substring):
        if self.calls:
            assert self._attached.wait(5)
        with self._changed:
            self.calls.append((substring, self.midi and self.midi.warning))
            self._changed.notify_all()
        result = self.results.pop(0) if self.results else MidiError("no MIDI input port name contains 'Knobs'")
        if isinstance(result, Exception):
            raise result
        return result

    def wait_calls(self, count, timeout=5.0):
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.calls) >= count, timeout), self.calls


def test_no_port_at_start_warns_and_keeps_trying(start):
    port = KnobPort("Knobs MIDI 1")
    opener = Opener(
        MidiError("no MIDI input port name contains 'Knobs' (ports here: none)"), OSError("device busy"), port
    )
    midi, _, bus = start(open_port=opener, retry_interval=0.02)
    opener.attach(midi)
    assert midi.port_name is None and midi.warning.startswith("MIDI: no MIDI input port name contains 'Knobs'")
    opener.wait_calls(3)
    assert opener.calls[0] == ("Knobs", None)
    assert opener.calls[1][1] == (
        "MIDI: no MIDI input port name contains 'Knobs' (ports here: none); retrying every 0.02 s"
    )
    assert opener.calls[2][1] == "MIDI: device busy; retrying every 0.02 s"
    assert fenced(port, bus, cc(1, 0)) == [SetControl("lin", 0.0)]
    assert midi.warning is None and midi.port_name == "Knobs MIDI 1"


def test_unplugged_port_warns_then_reconnects(start, caplog):
    first, second = KnobPort("Knobs MIDI 1"), KnobPort("Knobs MIDI 1")
    opener = Opener(first, MidiError("no MIDI input port name contains 'Knobs' (ports here: none)"), second)
    midi, _, bus = start(open_port=opener, retry_interval=0.02)
    opener.attach(midi)
    assert fenced(first, bus, cc(1, 0)) == [SetControl("lin", 0.0)]
    first.close()  # unplugged
    opener.wait_calls(3)
    assert opener.calls[1][1] == "MIDI: input 'Knobs MIDI 1' lost (port closed); retrying every 0.02 s"
    assert fenced(second, bus, cc(1, 1)) == [SetControl("lin", 1 / 127)]
    assert midi.warning is None
    assert "lost (port closed)" in caplog.text and "listening on 'Knobs MIDI 1' again" in caplog.text


def test_port_that_disappears_from_the_list_is_reopened(start):
    """An unplugged rtmidi port stays open but silent: its name leaving the port list is what tells."""
    first, second = KnobPort("Knobs MIDI 1"), KnobPort("Knobs MIDI 2")
    names = ["Knobs MIDI 1"]
    opener = Opener(first, second)
    midi, _, bus = start(open_port=opener, list_names=lambda: list(names), retry_interval=0.02)
    opener.attach(midi)
    assert fenced(first, bus, cc(1, 0)) == [SetControl("lin", 0.0)]
    names[:] = ["Knobs MIDI 2"]
    opener.wait_calls(2)
    assert opener.calls[1][1] == "MIDI: input 'Knobs MIDI 1' lost (unplugged); retrying every 0.02 s"
    assert first.closed
    assert fenced(second, bus, cc(1, 3)) == [SetControl("lin", 3 / 127)]


def test_read_errors_count_as_a_lost_port(start):
    class Broken(KnobPort):
        def poll(self):
            raise OSError("device gone")

    good = KnobPort("Knobs MIDI 1")
    opener = Opener(Broken("Knobs MIDI 1"), good)
    midi, _, bus = start(open_port=opener, retry_interval=0.02)
    opener.attach(midi)
    opener.wait_calls(2)
    assert opener.calls[1][1] == "MIDI: input 'Knobs MIDI 1' lost (read failed: device gone); retrying every 0.02 s"
    assert fenced(good, bus, cc(1, 0)) == [SetControl("lin", 0.0)]


def test_default_opener_matches_a_substring_of_the_port_names(monkeypatch):
    monkeypatch.setattr(ports_module, "ALSA_SEQUENCER", __file__)  # as on a machine with a sequencer
    monkeypatch.setattr(
        mido,
        "get_input_names",
        lambda: ["Midi Through:Midi Through Port-0 14:0", "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"],
    )
    monkeypatch.setattr(mido, "open_input", lambda name: KnobPort(name))
    assert open_matching_input("nanokontrol").name == "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"
    with pytest.raises(MidiError, match=r"^no MIDI input port name contains 'LPD8' \(ports here: Midi Through:"):
        open_matching_input("LPD8")


def test_default_opener_path_of_midi_input(monkeypatch):
    monkeypatch.setattr(ports_module, "ALSA_SEQUENCER", __file__)  # as on a machine with a sequencer
    port = KnobPort("nanoKONTROL2 MIDI 1")
    monkeypatch.setattr(mido, "get_input_names", lambda: [port.name])
    monkeypatch.setattr(mido, "open_input", lambda name: port)
    bus = RecordingBus()
    midi = MidiInput("nano", MidiMap(SECTION), Controls(SPECS), bus)
    try:
        assert midi.port_name == port.name
        assert fenced(port, bus, cc(1, 0)) == [SetControl("lin", 0.0)]
    finally:
        midi.close()
    assert port.closed


def test_port_names_without_a_backend_is_one_clear_line(monkeypatch):
    def fail():
        raise OSError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "get_input_names", fail)
    monkeypatch.setattr(ports_module, "ALSA_SEQUENCER", __file__)  # a sequencer that exists: rtmidi is asked
    with pytest.raises(MidiError) as info:
        midi_port_names()
    message = str(info.value)
    assert message.startswith("no MIDI backend works here: MidiInAlsa") and "ALSA sequencer" in message
    assert "\n" not in message


def test_without_an_alsa_sequencer_rtmidi_is_not_asked(monkeypatch, tmp_path):
    """Asked without /dev/snd/seq, libasound prints a line to stderr at every retry of a show: so it is not asked."""

    def asked():
        raise AssertionError("rtmidi was asked for ports")

    monkeypatch.setattr(mido, "get_input_names", asked)
    monkeypatch.setattr(ports_module, "ALSA_SEQUENCER", str(tmp_path / "no-seq"))
    monkeypatch.setattr(ports_module.sys, "platform", "linux")
    with pytest.raises(MidiError, match=r"^no MIDI backend works here: on Linux MIDI needs the ALSA sequencer"):
        midi_port_names()


def test_real_backend_here_gives_names_or_a_midi_error():
    """Whatever this machine has: a list of names, or (no ALSA sequencer) MidiError, never another exception."""
    try:
        names = midi_port_names()
    except MidiError as exc:
        assert "no MIDI backend works here" in str(exc)
    else:
        assert all(isinstance(n, str) for n in names)


def test_show_goes_on_without_any_midi_backend():
    bus = RecordingBus()
    midi = MidiInput("nano", MidiMap(SECTION), Controls(SPECS), bus, retry_interval=60)
    try:
        assert midi.warning is None or midi.warning.startswith("MIDI: ")
        assert (midi.port_name is None) == (midi.warning is not None)
    finally:
        midi.close()
