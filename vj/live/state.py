"""What a live frame depends on besides the audio: the preset (hot reloaded), scenes, controls and warnings.

Only the engine thread touches a ShowState: it applies the actions between frames and makes each frame's
request through the same `Director` as a render, with the scene from triggers instead of the clock.
"""

import logging
import os
import threading
import time
from pathlib import Path

from vj.live.controls import actions as act
from vj.show.director import Director
from vj.live.scene_triggers import LiveScenes
from vj.config.loading import PresetError, load_preset_text, read_preset_text, with_scene

log = logging.getLogger(__name__)

WARNING_SECONDS = 8.0  # how long a warning stays in the HUD
NOTE_SECONDS = 3.0  # how long a note ("reloaded show.yaml") stays in the HUD
RELOAD_CHECK_SECONDS = 0.5
# What the show builds once at the start (the weights, the init image, a pixel model's palette picture): a reload
# that changes them is taken without them and says so. image_model is the engine factory's to say.
VIDEO_KEYS = ("animation_mode", "video_path", "frame_stride", "video_loop")  # the video source opens at the start
RESTART_KEYS = ("model", "vae", "init_image", "target_palette", *VIDEO_KEYS)
DIFFUSION_FREE_RESTART_KEYS = ("init_image", "target_palette", *VIDEO_KEYS)  # a pixel model has no model or vae


class Warnings:
    """Recent warnings for the HUD, each shown for `seconds` (WARNING_SECONDS), the same text once (refreshed) and
    logged once at `level`. Threads add and read them (engine errors, the HUD), hence the lock."""

    def __init__(self, clock=time.monotonic, seconds=WARNING_SECONDS, level=logging.WARNING):
        self._clock = clock
        self._seconds = seconds
        self._level = level
        self._lock = threading.Lock()
        self._items = {}

    def add(self, text):
        with self._lock:
            new = text not in self._items
            self._items[text] = self._clock() + self._seconds
        if new:
            log.log(self._level, "%s", text)

    def discard(self, texts):
        """Take `texts` off the HUD before their time (e.g. the errors of a version a reload has replaced)."""
        with self._lock:
            for text in texts:
                self._items.pop(text, None)

    def current(self):
        now = self._clock()
        with self._lock:
            self._items = {t: until for t, until in self._items.items() if until > now}
            return list(self._items)


class PresetWatcher:
    """Notices when the preset file changes on disk (size or modification time) or is gone (deleted, or cannot be
    looked at), checked at most twice a second."""

    def __init__(self, path, clock=time.monotonic):
        self.path = path
        self._clock = clock
        self._next = 0.0
        self._stamp = self._read()

    def _read(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def check(self):
        """'changed' (once per change), 'missing' (at every check while the file is gone) or None."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + RELOAD_CHECK_SECONDS
        stamp = self._read()
        if stamp is None:
            self._stamp = None  # when it is back, whatever it holds is a change
            return "missing"
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        return "changed"


class ShowState:
    """The preset, its Director, the live scenes and the controls; `apply` actions, then `request` a frame."""

    def __init__(
        self, preset, controls, overrides=None, warnings=None, transitions=None, video=None, control_images=None
    ):
        self.overrides = overrides or {}
        self.video = video  # the VideoSource of Video Source mode (--video-in or video_path), or None
        self.control_images = control_images  # the ControlNets' picture and video files (show.control_images)
        self.transitions = transitions  # latent-blend Transitions shared with a worker, or None
        self.controls = controls
        self.warnings = warnings or Warnings()
        self.notes = Warnings(seconds=NOTE_SECONDS, level=logging.INFO)  # the HUD's passing confirmations
        self.watcher = PresetWatcher(preset.path) if preset.path else None
        self._reload_warnings = []  # what the latest reload said: the next one replaces it
        self.started_with = preset  # what RESTART_KEYS hold until a restart
        self.preset = None
        self.scenes = LiveScenes(len(preset.scenes), preset.transition_time, preset.scene_quantize)
        self._use(preset)
        self.frame = 0
        self.reloads = 0
        self.changes = []  # the preset changes taken since the engine thread last looked: ("reload", text) or
        # ("prompt", scene index, text), for a recording (`vj live --record`)
        self.inputs = {}  # the last request's variable values (audio, musical and controls)
        self.position = None  # the last request's ScenePosition

    def _use(self, preset):
        director = Director(
            preset,
            transitions=self.transitions,
            notify=self.warnings.add,
            video=self.video,
            control_images=self.control_images,
        )
        self.preset = preset
        if self.transitions is not None:
            self.transitions.use_preset(preset)
        self.director = director
        self.controls.respec(preset.controls)
        self.scenes.resize(len(preset.scenes))
        self.scenes.transition_time = preset.transition_time
        self.scenes.quantize = preset.scene_quantize

    # -- actions ---------------------------------------------------------------------------------------------
    def apply(self, action, now, beat):
        """Apply a show action at show time `now`; `beat` holds the current musical variables (for quantizing)."""
        beat = dict(beat, beats_per_bar=self.preset.beats_per_bar)
        if isinstance(action, act.SetControl):
            if action.name in self.controls.specs:
                self.controls.set(action.name, action.value)
        elif isinstance(action, act.JumpScene):
            self.scenes.jump(action.index, now, beat)
        elif isinstance(action, act.NextScene):
            self.scenes.next(now, beat)
        elif isinstance(action, act.PreviousScene):
            self.scenes.previous_scene(now, beat)
        elif isinstance(action, act.QueueScene):
            self.scenes.queue(action.index)
        elif isinstance(action, act.ReplacePrompt):
            self.replace_prompt(action.index, action.text)
        elif isinstance(action, act.ReloadPreset):
            self.reload()
        elif isinstance(action, act.Warn):
            self.warnings.add(action.text)
        else:
            log.debug("action %r is not the show state's", action)

    def replace_prompt(self, index, text):
        """Scene `index` gets the text `text` (one scene of the scene DSL); a bad text leaves it as it was."""
        try:
            preset = with_scene(self.preset, index, text)
        except PresetError as exc:
            self.warnings.add(str(exc))
            return
        self._use(preset)
        self.changes.append(("prompt", index, text))

    # -- hot reload ------------------------------------------------------------------------------------------
    def reload_if_changed(self):
        """Reload the preset when its file changed; returns the new preset or None. While the file is gone the HUD
        says so and the show runs on with the last good version."""
        status = self.watcher.check() if self.watcher is not None else None
        if status == "changed":
            return self.reload()
        if status == "missing":
            self._say_about_reload(
                [
                    f"preset file {Path(self.preset.path).name} is gone (deleted, moved or out of "
                    f"reach): the show keeps the last good version and reloads when the file is back"
                ]
            )
        return None

    def reload(self):
        """Load the preset file again; a version with errors is refused (errors to the HUD and log). A taken one
        is noted in the HUD, clears what an earlier reload said, and names the keys that wait for a restart."""
        try:
            text = read_preset_text(self.preset.path)  # parsed as read, and kept so that a recording holds it
            preset = load_preset_text(text, self.preset.path, self.overrides)
            self._use(preset)  # the Director refuses Video Source without a video: the show keeps its preset
        except PresetError as exc:
            self._say_about_reload([f"reload refused: {line}" for line in str(exc).splitlines()])
            return None
        self.reloads += 1
        self.changes.append(("reload", text))
        self._say_about_reload(self._restart_warnings(preset))
        self.notes.add(f"reloaded {Path(preset.path).name}")
        return preset

    def _say_about_reload(self, warnings):
        """Replace what the previous reload said in the HUD with `warnings`."""
        self.warnings.discard([text for text in self._reload_warnings if text not in warnings])
        for text in warnings:
            self.warnings.add(text)
        self._reload_warnings = warnings

    def _restart_warnings(self, preset):
        """'model, vae: take effect at restart (the show keeps model X, vae Y)' when a reload changed them."""
        old = self.started_with
        keys = RESTART_KEYS if preset.image_model == "diffusion" else DIFFUSION_FREE_RESTART_KEYS
        changed = [key for key in keys if getattr(preset, key) != getattr(old, key)]
        if not changed:
            return []
        kept = ", ".join(f"{key} {getattr(old, key) or 'none'}" for key in changed)
        return [f"{', '.join(changed)}: take effect at restart (the show keeps {kept})"]

    def wanted_transitions(self):
        """The latent-blend transitions to compute ahead (none unless the preset blends)."""
        if self.transitions is None or self.preset.transition_mode != "latent_blend":
            return []
        return self.scenes.upcoming()

    def engine_settings(self):
        from vj.show.engines import engine_settings

        return engine_settings(self.preset)

    # -- frames ----------------------------------------------------------------------------------------------
    def taken_changes(self):
        """The preset changes taken since the last call (a recording writes them), oldest first."""
        changes, self.changes = self.changes, []
        return changes

    def request(self, now, values):
        """The FrameRequest at show time `now` with the audio/musical `values`; controls join them."""
        self.scenes.update(now)
        self.inputs = dict(values)
        self.inputs.update(self.controls.values)
        self.frame = int(round(now * self.preset.frames_per_second))
        self.position = self.scenes.at(now)
        return self.director.request(self.frame, now, self.inputs, self.position)
