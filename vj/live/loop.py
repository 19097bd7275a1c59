"""`vj live`: audio analysis thread -> variable snapshot -> engine thread -> newest-frame slot -> display.

The engine thread applies show actions between frames and renders at most at the preset's frame rate; the
main thread polls inputs, shows the newest finished frame with the HUD and never waits for the engine. An engine
error never closes the window: the last good frame stays, the error goes to the HUD, and the engine retries
(after running out of memory, at a smaller size).
"""

import collections
import dataclasses
import json
import logging
import threading
import time

import numpy as np

from vj.engine.errors import OutOfMemory
from vj.live.controls import actions as act
from vj.live import hud
from vj.live.slot import ShownFrame
from vj.live.thumbnails import thumbnails
from vj.show.engine_thread import EngineThread

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
MIN_SIZE = 64
IDLE_PRESENT = 0.25  # without HUD or blend the picture is presented again at least this often
HUD_FPS = 30  # with the HUD, its level bars move this often between engine frames
POLL_SECONDS = 1.0 / 60  # the longest the display loop waits for a frame between two looks at the keys
NO_CONTROLNETS = "control preview: this preset has no ControlNets"
NO_PREVIEW_HERE = "control preview: nothing to show it on (--headless)"


def _toggle(current, wanted):
    return (not current) if wanted is None else bool(wanted)


def smaller(settings):
    """Engine settings at half the size (multiples of 8, at least MIN_SIZE), or None when already minimal."""
    width = max(MIN_SIZE, settings.width // 2 // 8 * 8)
    height = max(MIN_SIZE, settings.height // 2 // 8 * 8)
    if (width, height) == (settings.width, settings.height):
        return None
    return dataclasses.replace(settings, width=width, height=height)


class Rate:
    """Events per second over the last second (engine and display fps); 0 when nothing happened in it."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._times = collections.deque()

    def tick(self):
        self._times.append(self._clock())
        self._trim()

    def _trim(self):
        now = self._clock()
        while self._times and now - self._times[0] > 1.0:
            self._times.popleft()

    @property
    def value(self):
        self._trim()
        return float(len(self._times))


class EngineLoop:
    """The engine thread: actions in, requests through the engine, frames into the slot."""

    def __init__(self, state, make_engine, settings, audio, slot, clock):
        self.state = state
        self.make_engine = make_engine  # settings -> FrameEngine (same components)
        self.settings = settings
        self.engine = make_engine(settings)
        self.audio = audio
        self.slot = slot
        self.clock = clock
        self.inbox = act.ActionBus()
        self._thread = EngineThread(self._paced_step, self._failed)
        self.stop = self._thread.stop
        self.frozen = threading.Event()
        self.control_preview = threading.Event()  # set: each frame carries thumbnails of its control maps
        self._said_no_maps = False  # the preview is on, and the HUD was told the engine has no control maps
        self.rate = Rate()
        self.errors = 0
        self.last_values = {}
        self.on_reload = []  # callables(preset) run after a hot reload (e.g. the MIDI map)
        self.on_preset = []  # callables(preset) run when the preset changes (reload, typed prompt)
        self._preset = state.preset
        self.worker = None  # a TransitionWorker computing latent-blend transitions ahead
        self.recording = None  # a ShowRecording (`--record`), or None

    def record(self, recording):
        """Report every frame and what changes before it to `recording` from now on."""
        self.recording = recording
        recording.preset_used(self.state.preset)
        recording.settings(self.settings, "start")

    def start(self):
        self._thread.start()

    def close(self, timeout=1.5):
        """Stop; a frame still rendering is abandoned after `timeout` (the thread is a daemon)."""
        self._thread.close(timeout)

    def _paced_step(self):
        started = time.monotonic()
        self.step()
        interval = 1.0 / self.state.preset.frames_per_second
        self.stop.wait(max(0.0, interval - (time.monotonic() - started)))  # cap at the preset's fps

    def _failed(self, exc):
        """Nothing on the engine thread may end the show: count, show, pause and retry (SystemExit and
        KeyboardInterrupt, which are not Exceptions, end the thread)."""
        if not isinstance(exc, Exception):
            return False
        self.errors += 1
        self.state.warnings.add(f"engine error: {type(exc).__name__}: {exc}")
        log.error("engine step failed", exc_info=exc)
        self.stop.wait(RETRY_SECONDS)  # pause before retrying; wakes at once when the show stops
        return True

    def step(self):
        """One frame: apply queued actions, maybe reload, render, publish."""
        now = self.clock()
        values, heard_at = self.audio.snapshot()
        audio_time = self.audio.audio_time
        self.last_values = values
        recording = self.recording
        for action, source in self.inbox.drain_with_sources():
            self.state.apply(action, now, values)
            if recording is not None:
                recording.action(action, source, now)
        self.state.reload_if_changed()
        changes = self.state.taken_changes()
        reloaded = any(kind == "reload" for kind, *_ in changes)  # the file watched, or a reload action (OSC, MIDI)
        if recording is not None and changes:
            recording.changes(changes, now)
            recording.preset_used(self.state.preset)
        if reloaded:
            self._settings_changed()
        elif self.state.preset is not self._preset:
            self._preset_changed()
        if self.frozen.is_set():
            return
        request = self.state.request(now, values)
        begun = self.state.scenes.taken()
        if recording is not None and begun:
            recording.scenes(begun)
        if self.worker is not None:
            self.worker.want(self.state.wanted_transitions())
        try:
            rgb = self.engine.render(request)
        except OutOfMemory as exc:
            self._shrink(exc)
            return
        made_at = time.monotonic()
        preview = self.control_preview.is_set()
        previews = self._previews() if preview else ()
        if not preview:
            self._said_no_maps = False  # the next time it is on, the HUD is told again
        self.slot.put(ShownFrame(rgb, request.index, heard_at, made_at, previews))
        self.rate.tick()
        if recording is not None:
            recording.frame(request, rgb, now, self.state.position, self.state.inputs, audio_time)

    def _previews(self):
        """Thumbnails of the maps the ControlNets followed for the frame just rendered (only paid for while the
        preview is on); without any, a note in the HUD, once. A failure costs the preview, never the frame."""
        maps = getattr(self.engine, "control_maps", ())  # pixel models and fakes have none
        if not maps:
            if not self._said_no_maps:
                self.state.notes.add(NO_CONTROLNETS)
                self._said_no_maps = True
            return ()
        self._said_no_maps = False
        try:
            return thumbnails(maps)
        except Exception as exc:
            self.state.warnings.add(f"control preview: {type(exc).__name__}: {exc}")
            return ()

    def _preset_changed(self):
        self._preset = self.state.preset
        for hook in self.on_preset:
            hook(self._preset)

    def _settings_changed(self):
        self._preset_changed()  # first: an engine made below is made from the new preset
        settings = self.state.engine_settings()
        if settings != self.settings:
            self.settings = settings
            self.engine = self.make_engine(settings)
            if self.recording is not None:
                self.recording.settings(settings, "reload")
        for hook in [self.audio.use_preset, *self.on_reload]:
            hook(self.state.preset)

    def _shrink(self, exc):
        smaller_settings = smaller(self.settings)
        if smaller_settings is None:
            raise exc
        self.state.warnings.add(
            f"out of memory at {self.settings.width}x{self.settings.height}: now "
            f"{smaller_settings.width}x{smaller_settings.height}"
        )
        self.engine = None  # let the failed engine's memory go before the new one takes its own
        self.settings = smaller_settings
        self.engine = self.make_engine(smaller_settings)
        if self.recording is not None:
            self.recording.settings(smaller_settings, "out of memory")


class StatsWriter:
    """`--stats FILE`: one JSON object per line, about once a second."""

    def __init__(self, path, clock=time.monotonic):
        self._file = open(path, "w", encoding="utf-8") if path else None
        self._clock = clock
        self._next = 0.0

    def maybe_write(self, record_fn):
        if self._file is None:
            return
        now = self._clock()
        if now < self._next:
            return
        self._next = now + 1.0
        self._file.write(json.dumps(record_fn()) + "\n")
        self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()


class Show:
    """The main thread's side: inputs, display, HUD and stats, around an EngineLoop."""

    def __init__(
        self, engine_loop, display, bus, clock, hud=True, stats_path=None, midi=None, duration=None, outputs=()
    ):
        self.loop = engine_loop
        self.display = display
        self.bus = bus
        self.clock = clock
        self.hud = hud
        self.stats = StatsWriter(stats_path)
        self.midi = midi
        self.duration = duration
        self.blackout = False
        self._presented_at = -float("inf")
        self.quit = threading.Event()
        self.latency_ms = 0.0
        self.greeting = []  # what `vj live` prints once the show is up (main.build fills it)
        self.outputs = list(outputs)  # FrameOutputs (--out): each new frame shown, without the HUD
        self._shown = None  # the newest frame shown (what a blackout's end shows again)

    def handle_pending(self):
        """Apply (or pass on) every action the inputs queued; returns whether there were any."""
        pending = self.bus.drain_with_sources()
        for action, source in pending:
            self.handle(action, source)
        return bool(pending)

    def handle(self, action, source="show"):
        """Apply a main-thread action, or pass it on to the engine thread as `source`'s (the input that sent it)."""
        if isinstance(action, act.Quit):
            self.quit.set()
        elif isinstance(action, act.ToggleHud):
            self.hud = not self.hud
        elif isinstance(action, act.ToggleFullscreen):
            self.display.toggle_fullscreen()
        elif isinstance(action, act.Blackout):
            self.blackout = _toggle(self.blackout, action.on)
            self._record_shown(self._shown)
        elif isinstance(action, act.Freeze):
            if _toggle(self.loop.frozen.is_set(), action.on):
                self.loop.frozen.set()
            else:
                self.loop.frozen.clear()
        elif isinstance(action, act.ToggleControlPreview):
            self._control_preview(_toggle(self.loop.control_preview.is_set(), action.on))
        elif isinstance(action, (act.Learn, act.LearnNext)):
            if self.midi is None:
                self.loop.state.warnings.add("MIDI learn needs --midi PORT")
            else:
                self.midi.learn(action.name if isinstance(action, act.Learn) else self._step_learning(action.step))
        elif isinstance(action, (act.TapTempo, act.Downbeat)):
            audio = self.loop.audio
            (audio.tap if isinstance(action, act.TapTempo) else audio.downbeat)(self._monotonic(action.t))
        else:
            self.loop.inbox.put(action, source)
            return
        if self.loop.recording is not None and isinstance(
            action, (act.Blackout, act.Freeze, act.TapTempo, act.Downbeat)
        ):
            self.loop.recording.display_action(action, self.clock())

    def _control_preview(self, on):
        """Ask the engine thread for thumbnails from its next frame on (or no longer); a display that draws no
        pictures (--headless) keeps it off and says so."""
        if on and not getattr(self.display, "shows_previews", False):
            self.loop.state.notes.add(NO_PREVIEW_HERE)
            on = False
        if on:
            self.loop.control_preview.set()
        else:
            self.loop.control_preview.clear()

    def _step_learning(self, step):
        """The control after (or before) the one being learned, in the preset's order; None past either end."""
        names = list(self.loop.state.controls.specs)
        current = self.midi.learning
        if current in names:
            at = names.index(current) + step
        else:
            at = 0 if step > 0 else len(names) - 1
        if not names:
            self.loop.state.warnings.add("MIDI learn: the preset has no controls")
        return names[at] if 0 <= at < len(names) else None

    def _monotonic(self, t):
        """time.monotonic() time of show time `t` (None: now)."""
        now = time.monotonic()
        return now if t is None else now - (self.clock() - t)

    def run(self):
        """Until Quit, Esc, Ctrl-C, SIGTERM or `duration`: returns the exit status."""
        self.loop.start()
        started = self.clock()
        try:
            while not self.quit.is_set():
                for action in self.display.poll():
                    self.bus.put(action, "keys")
                self._present(force=self.handle_pending())
                self.stats.maybe_write(self.record)
                if self.duration is not None and self.clock() - started >= self.duration:
                    break
                # until the next present is due, or sooner when the engine finishes a frame: shown at once
                self.loop.slot.wait(self._next_present_in())
        except KeyboardInterrupt:
            pass
        finally:
            self.loop.close()
            self.stats.close()
        return 0

    def _repeat_interval(self):
        """Seconds between presents of the same frame: every refresh while `blend` fades, HUD_FPS for the HUD's
        level bars, else IDLE_PRESENT. New frames are presented at once, and with vsync the fewer repeats there
        are, the less often a new frame waits for a repeat's refresh."""
        if self.display.blend:
            return 0.0
        return 1.0 / HUD_FPS if self.hud else IDLE_PRESENT

    def _next_present_in(self):
        if self.display.blend:
            return self.display.next_present_in()
        due = self._presented_at + self._repeat_interval() - time.monotonic()
        return min(POLL_SECONDS, max(0.0, due))

    def _present(self, force=False):
        frame, new = self.loop.slot.take()
        now = time.monotonic()
        if not (new or force or now - self._presented_at >= self._repeat_interval()):
            return
        self._presented_at = now
        lines, levels = self.hud_content() if self.hud else (None, None)
        extra = {}
        if frame is not None and frame.previews and self.loop.control_preview.is_set():
            # the newest frame's thumbnails, repeats included; passed only when there are some, as only displays
            # that draw them (shows_previews) take them. The outputs and the recording get frame.rgb alone.
            extra["previews"] = frame.previews
        self.display.present(
            frame if new else None, blackout=self.blackout, hud_lines=lines, hud_levels=levels, **extra
        )
        if new and frame is not None:  # the audio's arrival to the flip that put the frame on screen
            flipped = self.display.flipped_at or time.monotonic()
            self.latency_ms = max(0.0, (flipped - frame.heard_at) * 1000.0)
            self._send(frame.rgb)
            self._shown = frame.rgb
            self._record_shown(frame.rgb)

    def _record_shown(self, rgb):
        """The picture the audience sees from now on, to the recording's show.mp4 (black while blacked out)."""
        if self.loop.recording is not None and rgb is not None:
            self.loop.recording.shown(np.zeros_like(rgb) if self.blackout else rgb, self.clock())

    def _send(self, rgb):
        """The frame shown, to every output: black while blacked out, as the screen is (sends never block)."""
        if self.outputs and self.blackout:
            rgb = np.zeros_like(rgb)
        for output in self.outputs:
            output.send(rgb)

    def hud_content(self):
        """(lines, level bars) of the HUD from the show's current state."""
        state = self.loop.state
        values = self.loop.last_values
        waiting = self.midi.waiting_for_pickup() if self.midi is not None else {}
        knobs = {
            name: state.controls.specs[name].value(knob)
            for name, (knob, _) in waiting.items()
            if name in state.controls.specs
        }
        learning = self.midi.learning if self.midi is not None else None
        controls = [
            hud.ControlView(name, value, knobs.get(name), name == learning)
            for name, value in state.controls.values.items()
        ]
        lines = hud.hud_lines(
            engine_fps=self.loop.rate.value,
            display_fps=self.display.fps,
            latency_ms=self.latency_ms,
            vsync=self.display.vsync,
            scene=state.scenes.current,
            scene_count=state.scenes.count,
            queued=state.scenes.queued,
            bpm=values.get("bpm", 0.0),
            bar_phase=values.get("bar_phase"),
            beats_per_bar=state.preset.beats_per_bar,
            activity={source: self.bus.active(source) for source in ("midi", "osc", "keys")},
            controls=controls,
            warnings=state.warnings.current() + [w for w in self._input_warnings() if w],
            blackout=self.blackout,
            frozen=self.loop.frozen.is_set(),
            transition=self._transition_text(),
            notes=state.notes.current(),
        )
        levels = hud.hud_levels({name: values.get(name, 0.0) for name in state.preset.input_variables})
        return lines, levels

    def _transition_text(self):
        """'transition: latent blend', '... crossfade (latent blend not ready)', 'computing transition 1 -> 2'."""
        parts = []
        blending = self.loop.state.director.blending
        if blending is not None:
            parts.append(f"transition: {blending}")
        computing = self.loop.worker.computing if self.loop.worker is not None else None
        if computing is not None:
            parts.append(f"computing transition {computing[0] + 1} -> {computing[1] + 1}")
        return "  ".join(parts) or None

    def _input_warnings(self):
        video, images = self.loop.state.video, self.loop.state.control_images
        return [
            self.loop.audio.warning,
            images.warning if images is not None else None,
            self.midi.warning if self.midi is not None else None,
            video.warning if video is not None else None,
            self.loop.recording.warning if self.loop.recording is not None else None,
            *(f"{output.target}: {output.warning}" if output.warning else None for output in self.outputs),
        ]

    def record(self):
        """One line of `--stats`, and the `/vj/status` reply: enough for a controller to mirror the show."""
        state = self.loop.state
        scenes = state.scenes
        variables = dict(self.loop.last_values)
        variables.update(state.controls.values)
        queued = scenes.queued
        return {
            "t": round(self.clock(), 3),
            "engine_fps": round(self.loop.rate.value, 2),
            "display_fps": round(self.display.fps, 2),
            "latency_ms": round(self.latency_ms, 1),
            "dropped_frames": self.loop.slot.dropped,
            "scene": scenes.current,
            "scene_number": scenes.current + 1,  # as keys 1-9 and OSC /vj/scene number scenes
            "scene_count": scenes.count,
            "queued_scene": None if queued is None else queued + 1,  # a scene number, as /vj/scene/queue takes
            "blackout": self.blackout,
            "frozen": self.loop.frozen.is_set(),
            "hud": self.hud,
            "control_preview": self.loop.control_preview.is_set(),
            "engine_errors": self.loop.errors,
            "reloads": state.reloads,  # hot reloads taken (a controller sees its edit arrive)
            "variables": {k: round(float(v), 6) for k, v in variables.items()},
            **({"outputs": {output.target: output.stats() for output in self.outputs}} if self.outputs else {}),
            **({"video_in": state.video.stats()} if state.video is not None else {}),
            **({"recording": self.loop.recording.stats()} if self.loop.recording is not None else {}),
        }
