"""The live show's engine side: actions between frames, hot reload, engine faults; and `vj live` end to end on Xvfb."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vj.engine.errors import OutOfMemory
from vj.live.controls import actions as act
from vj.live.controls.controls import Controls
from vj.live.audio_feed import SilentAudio
from vj.live.loop import EngineLoop, smaller
from vj.live.slot import FrameSlot
from vj.live.state import ShowState
from vj.config.loading import load_preset
from vj.show.engines import engine_settings

PRESET = """\
scenes: a red square:1 | sparks:knob || a blue circle:1
transition_time: 1
width: 64
height: 64
frames_per_second: 10
bpm: 120
controls:
  - {name: knob, default: 0.25, range: [0, 2]}
strength: 0.2 + 0.1*knob
"""


@pytest.fixture
def preset_file(tmp_path):
    path = tmp_path / "show.yaml"
    path.write_text(PRESET)
    return path


class Clock:
    """A settable show clock for the watcher and the loop."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make_state(path, clock=None):
    preset = load_preset(path, {"model": "tiny"})
    state = ShowState(preset, Controls(preset.controls), {"model": "tiny"})
    if clock is not None:
        state.watcher._clock = clock
    return state


def test_controls_reach_the_request_and_scene_actions_crossfade(preset_file):
    state = make_state(preset_file)
    request = state.request(0.0, {})
    assert dict(request.prompts)["sparks"] == pytest.approx(0.25)  # the control's default
    state.apply(act.SetControl("knob", 1.5), 0.0, {})
    state.apply(act.SetControl("knob", 9.0), 0.0, {})  # clamped to the range
    state.apply(act.JumpScene(1), 0.5, {})
    request = state.request(1.0, {})
    assert request.strength == pytest.approx(0.4)
    assert request.prompts == (("a blue circle", 1.0),) and request.mix == pytest.approx(0.5)
    assert dict(request.previous_prompts)["sparks"] == pytest.approx(2.0)


def test_replace_prompt_live_and_refuse_a_bad_one(preset_file):
    state = make_state(preset_file)
    state.apply(act.ReplacePrompt(1, "a green triangle:2"), 0.0, {})
    state.apply(act.JumpScene(1), 0.0, {})
    assert state.request(5.0, {}).prompts == (("a green triangle", 2.0),)
    state.apply(act.ReplacePrompt(1, "oops:nosuchvariable"), 5.0, {})
    assert state.request(5.0, {}).prompts == (("a green triangle", 2.0),)
    assert any("scene 2" in w and "refused" in w for w in state.warnings.current())


def test_hot_reload_takes_a_good_version_and_refuses_a_bad_one(preset_file):
    clock = Clock()
    state = make_state(preset_file, clock)
    state.controls.set("knob", 1.0)
    preset_file.write_text(PRESET.replace("a blue circle:1", "a yellow star:1 || a third scene:1"))
    clock.t = 1.0
    assert state.reload_if_changed() is not None
    assert len(state.preset.scenes) == 3 and state.scenes.count == 3
    assert state.controls.values["knob"] == 1.0  # kept across the reload
    preset_file.write_text(PRESET + "strength: [broken\n")
    clock.t = 2.0
    assert state.reload_if_changed() is None
    assert len(state.preset.scenes) == 3  # the last good preset stays
    assert any("reload refused" in w and "show.yaml" in w for w in state.warnings.current())


class FailingEngine:
    """An engine whose render raises `error` (the real engine behind it never runs)."""

    def __init__(self, error, settings=None):
        self.error = error
        self.settings = settings
        self.objective = None

    def render(self, request):
        raise self.error

    def reset(self):
        pass


def tiny_loop(preset_file, make_engine=None):
    from vj.engine.diffusion.frames import FrameEngine
    from vj.engine.diffusion.models import load_components

    state = make_state(preset_file)
    components = load_components("tiny", "auto", "cpu", "float32")
    make_engine = make_engine or (lambda settings: FrameEngine(components, settings))
    clock = Clock()
    return EngineLoop(
        state, make_engine, engine_settings(state.preset), SilentAudio(state.preset, clock), FrameSlot(), clock
    ), clock


def test_engine_loop_publishes_frames_with_the_time_their_audio_was_heard(preset_file):
    loop, clock = tiny_loop(preset_file)
    clock.t = 0.5
    before = time.monotonic()
    loop.step()
    frame, new = loop.slot.take()
    assert new and frame.rgb.shape == (64, 64, 3) and frame.rgb.dtype == np.uint8
    assert before <= frame.heard_at <= frame.made_at and frame.index == 5
    loop.frozen.set()
    loop.step()
    assert loop.slot.take() == (frame, False)  # frozen: no new frame


def _full_above(unet, monkeypatch, size, error):
    """Make the real UNet run out of memory on latents wider than `size`, as a device does: `error()` raised."""
    forward = unet.forward

    def limited(sample, *args, **kwargs):
        if sample.shape[-1] > size:
            raise error()
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", limited)


def _cpu_allocation():
    """The error torch's CPU allocator really raises (a RuntimeError, no OutOfMemoryError)."""
    try:
        torch.empty(1 << 60, dtype=torch.uint8)
    except RuntimeError as exc:
        return exc
    raise AssertionError("the allocation succeeded")


@pytest.mark.parametrize(
    "error",
    [lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB"), _cpu_allocation],
    ids=["cuda", "cpu"],
)
def test_out_of_memory_falls_back_to_a_smaller_size_and_keeps_the_last_frame(preset_file, monkeypatch, error):
    preset_file.write_text(PRESET.replace("width: 64", "width: 128").replace("height: 64", "height: 128"))
    loop, clock = tiny_loop(preset_file)
    loop.step()
    good, _ = loop.slot.take()
    assert good.rgb.shape == (128, 128, 3)
    _full_above(loop.engine.c.unet, monkeypatch, 8, error)  # 128 px (16 latents) no longer fits
    loop.step()
    assert loop.slot.take() == (good, False)  # the last good frame stays
    assert "out of memory at 128x128: now 64x64" in loop.state.warnings.current()
    loop.step()
    assert loop.slot.take()[0].rgb.shape == (64, 64, 3)  # the smaller engine renders
    _full_above(loop.engine.c.unet, monkeypatch, 0, error)
    with pytest.raises(OutOfMemory):  # at the floor: an error for the HUD
        loop.step()
    assert smaller(loop.settings) is None


def test_other_engine_errors_are_not_taken_for_out_of_memory(preset_file):
    preset_file.write_text(PRESET.replace("width: 64", "width: 128").replace("height: 64", "height: 128"))
    loop, clock = tiny_loop(preset_file)
    loop.engine = FailingEngine(RuntimeError("out of memory"))  # a message alone says nothing: types decide
    with pytest.raises(RuntimeError):
        loop.step()
    assert loop.settings.width == 128


def test_an_engine_error_never_ends_the_loop(preset_file):
    loop, clock = tiny_loop(preset_file)
    loop.step()
    good, _ = loop.slot.take()
    loop.engine = FailingEngine(ValueError("bad tensor"))
    loop.start()
    try:
        assert loop.stop.wait(0.0) is False
        deadline = 50
        while loop.errors == 0 and deadline:  # the thread retries once a second; wait for the first error
            loop.stop.wait(0.1)
            deadline -= 1
    finally:
        loop.close()
    assert loop.errors >= 1 and loop.slot.take()[0] is good
    assert any("engine error: ValueError: bad tensor" in w for w in loop.state.warnings.current())


def test_vj_live_runs_on_xvfb_and_writes_stats(preset_file, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from xvfb import xvfb

    stats = tmp_path / "stats.jsonl"
    with xvfb(640, 480) as display:
        env = dict(os.environ, DISPLAY=display, SDL_VIDEODRIVER="x11", SDL_AUDIODRIVER="dummy")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "vj",
                "live",
                str(preset_file),
                "--model",
                "tiny",
                "--windowed",
                "--audio-device",
                "none",
                "--osc",
                "127.0.0.1:0",
                "--duration",
                "6",
                "--stats",
                str(stats),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    said = run.stdout.splitlines()  # once the show is up: where it listens, shows and hears
    assert any(line.strip().startswith("OSC: listening on 127.0.0.1:") for line in said), run.stdout
    assert any(line.strip().startswith("display: window 64x64 on display 0") for line in said), run.stdout
    assert any(line.strip().startswith("audio: none") for line in said), run.stdout
    keys = [line for line in said if line.strip().startswith("keys:")]
    assert keys and "F11 fullscreen" in keys[0] and "H HUD" in keys[0] and "README" in keys[0], run.stdout
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert len(records) >= 3
    last = records[-1]
    assert {
        "t",
        "engine_fps",
        "display_fps",
        "latency_ms",
        "dropped_frames",
        "scene",
        "variables",
        "blackout",
        "frozen",
        "queued_scene",
        "hud",
    } <= set(last)
    assert max(r["engine_fps"] for r in records) > 0 and last["display_fps"] > 0 and last["scene"] == 0
    assert last["variables"]["knob"] == 0.25 and last["variables"]["bpm"] == pytest.approx(120)


NO_WINDOW = SimpleNamespace(fps=0.0, vsync=None)  # what the show reads of a display, for tests without one


class LearningMidi:
    """The part of MidiInput the show uses: learning, pickup and its warning."""

    def __init__(self):
        self.learning = None
        self.warning = None

    def learn(self, name):
        self.learning = name
        return True

    def waiting_for_pickup(self):
        return {}


def test_keys_tap_the_tempo_at_their_show_time_through_the_engine_thread(preset_file):
    from vj.live.loop import Show

    loop, clock = tiny_loop(preset_file)
    show = Show(loop, display=NO_WINDOW, bus=act.ActionBus(), clock=clock)
    clock.t = 1.0
    loop.step()
    for t in (0.2, 0.6, 1.0):  # stamped by the key presses: 0.4 s apart, 150 BPM
        show.handle(act.TapTempo(t))
    clock.t = 1.5
    loop.step()
    assert show.record()["variables"]["bpm"] == pytest.approx(150.0, abs=0.01)


def test_learn_steps_through_the_controls_and_off(preset_file):
    from vj.live.loop import Show

    preset_file.write_text(PRESET.replace("controls:\n", "controls:\n  - {name: zoom, default: 0}\n"))
    loop, clock = tiny_loop(preset_file)
    midi = LearningMidi()
    show = Show(loop, display=NO_WINDOW, bus=act.ActionBus(), clock=clock, midi=midi)
    seen = []
    for step in (1, 1, 1, -1, -1):
        show.handle(act.LearnNext(step))
        seen.append(midi.learning)
    assert seen == ["zoom", "knob", None, "knob", "zoom"]
    lines = [line.text for line in show.hud_content()[0]]
    assert any(text.startswith("> zoom 0  LEARN") for text in lines)


def test_learn_without_midi_is_a_warning(preset_file):
    from vj.live.loop import Show

    loop, clock = tiny_loop(preset_file)
    Show(loop, display=NO_WINDOW, bus=act.ActionBus(), clock=clock).handle(act.LearnNext(1))
    assert "MIDI learn needs --midi PORT" in loop.state.warnings.current()


def test_a_full_action_bus_drops_and_counts_instead_of_growing():
    bus = act.ActionBus(capacity=3)
    for k in range(5):
        bus.put(act.SetControl("knob", k), "osc")
    assert bus.drain() == [act.SetControl("knob", k) for k in range(3)]
    assert bus.overflow.total == 2 and bus.active("osc")
    bus.put(act.Blackout(), "keys")
    assert bus.drain() == [act.Blackout()]


def test_the_slot_wakes_a_waiting_display_when_a_frame_arrives():
    from vj.live.slot import ShownFrame

    slot = FrameSlot()
    assert slot.wait(0.01) is False  # nothing new: the refresh timeout
    frame = ShownFrame(np.zeros((8, 8, 3), np.uint8), 0, 0.0, 0.0)
    putter = threading.Timer(0.05, slot.put, [frame])
    putter.start()
    assert slot.wait(10.0) is True and slot.take() == (frame, True)  # woken by the put, long before 10 s
    putter.join()
    assert slot.wait(0.0) is False


class CountingDisplay:
    """Counts presents; what the show reads of a display."""

    fps, vsync, blend, flipped_at = 0.0, True, False, None

    def __init__(self):
        self.frames = []

    def present(self, frame=None, **kwargs):
        self.frames.append(frame)


def test_without_hud_only_new_frames_and_changes_are_presented(preset_file, monkeypatch):
    from vj.live import loop as show_module
    from vj.live.slot import ShownFrame

    monkeypatch.setattr(show_module, "IDLE_PRESENT", 1e9)  # no idle repaint during the test, however slow
    monkeypatch.setattr(show_module, "HUD_FPS", 1e-9)
    loop, clock = tiny_loop(preset_file)
    display = CountingDisplay()
    show = show_module.Show(loop, display=display, bus=act.ActionBus(), clock=clock, hud=False)
    show._present()  # the first present (nothing shown yet)
    show._present()  # nothing new: no repeat (it would delay the next frame)
    assert len(display.frames) == 1
    frame = ShownFrame(np.zeros((8, 8, 3), np.uint8), 1, 0.0, 0.0)
    loop.slot.put(frame)
    show._present()
    show._present(force=True)  # an action (blackout...) was handled: present the change
    assert display.frames[1:] == [frame, None]
    show.hud = True
    assert show._repeat_interval() == 1.0 / show_module.HUD_FPS
    display.blend = True
    assert show._repeat_interval() == 0.0  # fades: every refresh


# -- what the performer is told (issue 16) ---------------------------------------------------------------------
def reload_at(state, clock, t):
    clock.t = t
    return state.reload_if_changed()


def test_a_taken_reload_says_so_and_clears_the_refusal_of_the_broken_version(preset_file):
    clock = Clock()
    state = make_state(preset_file, clock)
    preset_file.write_text(PRESET + "strength: [broken\n")
    assert reload_at(state, clock, 1.0) is None
    assert any(w.startswith("reload refused") for w in state.warnings.current())
    preset_file.write_text(PRESET.replace("a blue circle:1", "a yellow star:1"))
    assert reload_at(state, clock, 2.0) is not None
    assert not [w for w in state.warnings.current() if "refused" in w]  # the fix is not hidden behind old errors
    assert "reloaded show.yaml" in state.notes.current()


def test_a_reload_that_changes_restart_only_keys_names_them(preset_file):
    clock = Clock()
    preset_file.write_text(PRESET + "model: tiny\nvae: auto\n")
    preset = load_preset(preset_file)
    state = ShowState(preset, Controls(preset.controls))
    state.watcher._clock = clock
    preset_file.write_text(PRESET + "model: some/other-model\nvae: taesd\n")
    assert reload_at(state, clock, 1.0) is not None  # everything else is taken
    assert "model, vae: take effect at restart (the show keeps model tiny, vae auto)" in state.warnings.current()


def test_a_pixel_show_is_not_told_about_a_model_it_does_not_use(preset_file):
    clock = Clock()
    preset_file.write_text(PRESET + "image_model: unlimited_palette\nmodel: tiny\n")
    state = ShowState(load_preset(preset_file), Controls(()))
    state.watcher._clock = clock
    preset_file.write_text(PRESET + "image_model: unlimited_palette\nmodel: some/other-model\n")
    assert reload_at(state, clock, 1.0) is not None
    assert not [w for w in state.warnings.current() if "restart" in w], state.warnings.current()


def test_a_deleted_preset_file_is_a_warning_and_the_last_good_version_runs_on(preset_file):
    clock = Clock()
    state = make_state(preset_file, clock)
    running = state.preset
    preset_file.unlink()
    assert reload_at(state, clock, 1.0) is None
    assert state.preset is running
    gone = [w for w in state.warnings.current() if "show.yaml" in w and "gone" in w]
    assert gone and "keeps the last good version" in gone[0]
    preset_file.write_text(PRESET)
    assert reload_at(state, clock, 2.0) is not None  # back: reloaded, the warning goes
    assert not [w for w in state.warnings.current() if "gone" in w]


def test_a_warning_from_an_input_reaches_the_hud(preset_file):
    state = make_state(preset_file)
    state.apply(act.Warn("prompt for scene 1 refused: too long"), 0.0, {})
    assert "prompt for scene 1 refused: too long" in state.warnings.current()


def test_the_status_record_mirrors_blackout_freeze_queue_and_hud(preset_file):
    from vj.live.loop import Show

    loop, clock = tiny_loop(preset_file)
    show = Show(loop, display=NO_WINDOW, bus=act.ActionBus(), clock=clock)
    record = show.record()
    assert (record["blackout"], record["frozen"], record["queued_scene"], record["hud"]) == (False, False, None, True)
    assert record["scene_count"] == 2
    for action in (act.Blackout(True), act.Freeze(True), act.ToggleHud(), act.QueueScene(1)):
        show.handle(action)
    loop.step()  # the engine thread applies the queue
    record = show.record()
    assert (record["blackout"], record["frozen"], record["queued_scene"], record["hud"]) == (True, True, 2, False)


def test_actions_dropped_on_the_way_to_the_engine_name_their_input(preset_file, caplog):
    from vj.live.loop import Show

    loop, clock = tiny_loop(preset_file)
    loop.inbox = act.ActionBus(capacity=2)
    bus = act.ActionBus()
    show = Show(loop, display=NO_WINDOW, bus=bus, clock=clock)
    for k in range(3):  # an OSC flood, in small
        bus.put(act.SetControl("knob", k / 10), "osc")
    assert show.handle_pending()
    assert loop.inbox.overflow.total == 1
    assert "SetControl from osc" in caplog.text and "from show" not in caplog.text


def test_live_help_says_which_channels_are_mixed_by_default(capsys):
    from vj.cli import main

    with pytest.raises(SystemExit):
        main(["live", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: all" not in help_text and "default 1,2" in help_text


def test_rehearsal_without_an_audio_output_suggests_no_playback(preset_file, tmp_path):
    import soundfile
    from vj.audio.sources.devices import LiveAudioError
    from vj.live.audio_feed import open_audio

    song = tmp_path / "song.wav"
    soundfile.write(song, np.zeros(4800, np.float32), 48000)
    args = SimpleNamespace(audio=str(song), audio_device=None, no_playback=False, audio_output="no such output")
    with pytest.raises(LiveAudioError) as err:
        open_audio(args, load_preset(preset_file), Clock())
    assert "--no-playback" in str(err.value) and "\n" not in str(err.value)


def test_a_reload_action_reaches_the_audio_as_a_file_change_does(preset_file):
    """OSC's /vj/reload (an action) reloads as the file watcher does: new filters reach the analysis too."""
    loop, clock = tiny_loop(preset_file)
    loop.step()
    assert "fLo" not in loop.audio.analyzer.names
    preset_file.write_text(PRESET + "input_audio_filters:\n  - {variable_name: fLo, f_center: 100, f_width: 50}\n")
    loop.state.watcher._next = float("inf")  # the watcher does not look: only the action reloads
    loop.inbox.put(act.ReloadPreset(), "osc")
    clock.t = 0.5
    loop.step()
    assert loop.state.reloads == 1 and "fLo" in loop.audio.analyzer.names
