"""The typed actions every show input produces (keys, MIDI, OSC, file watcher) and the one bus they travel on.

Inputs run on their own threads and only `put` actions; the show applies them between frames (`drain`), so no
lock is held on the frame path and every action can be tested without hardware. Scene indexes are 0-based here;
user-facing numbers (keys 1-9, OSC `/vj/scene i`) are converted by the input that reads them.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass

from vj.throttled_log import RateLimitedLog


@dataclass(frozen=True)
class SetControl:
    """Set control `name` to `value`, in the control's own range."""

    name: str
    value: float


@dataclass(frozen=True)
class JumpScene:
    """Go to scene `index` (0-based), quantized like every scene change."""

    index: int


@dataclass(frozen=True)
class NextScene:
    """Go to the queued scene if one is queued, else the next one (wrapping)."""


@dataclass(frozen=True)
class PreviousScene:
    """Go to the previous scene (wrapping)."""


@dataclass(frozen=True)
class QueueScene:
    """Make scene `index` the one that `NextScene` goes to."""

    index: int


@dataclass(frozen=True)
class Blackout:
    """Black output: on, off, or toggle (`on` None)."""

    on: bool | None = None


@dataclass(frozen=True)
class Freeze:
    """Hold the current frame: on, off, or toggle (`on` None)."""

    on: bool | None = None


@dataclass(frozen=True)
class ToggleControlPreview:
    """Thumbnails of the control maps the ControlNets follow, at the bottom left of the window: on, off, or toggle
    (`on` None). A performer's aid: outputs and recordings never show them."""

    on: bool | None = None


@dataclass(frozen=True)
class TapTempo:
    """A tap at time `t` (seconds, the show clock; None: when the show applies it)."""

    t: float | None = None


@dataclass(frozen=True)
class Downbeat:
    """The beat nearest to time `t` (None: now) is the first of a bar."""

    t: float | None = None


@dataclass(frozen=True)
class ReplacePrompt:
    """Replace the text of scene `index` (0-based) with `text` (scene DSL for one scene)."""

    index: int
    text: str


@dataclass(frozen=True)
class ToggleHud:
    """Show or hide the HUD."""


@dataclass(frozen=True)
class ToggleFullscreen:
    """Switch between fullscreen and a window."""


@dataclass(frozen=True)
class ReloadPreset:
    """Read the preset file again (the file watcher sends this when it changes)."""


@dataclass(frozen=True)
class Learn:
    """MIDI learn: the next CC that moves binds to control `name` (None: stop learning)."""

    name: str | None


@dataclass(frozen=True)
class LearnNext:
    """MIDI learn from the HUD: pick the next control (`step` 1) or the previous one (-1) to learn; stepping past
    either end stops learning."""

    step: int = 1


@dataclass(frozen=True)
class Warn:
    """A warning for the HUD (and the log) from an input: something it was sent is refused, e.g. an over-long
    prompt, so the performer sees it like a prompt the show cannot parse."""

    text: str


@dataclass(frozen=True)
class Quit:
    """End the show."""


class ActionBus:
    """A thread-safe, bounded queue of actions, with per-input activity times for the HUD (`active(source)`).

    It never blocks an input: when `capacity` actions wait undrained (a show that stalls under a flood), further
    ones are dropped and counted with a rate-limited log line naming their input. Each action travels with the
    input that put it (`drain_with_sources`), so a bus passing actions on to another keeps naming the right one.
    """

    CAPACITY = 4096

    def __init__(self, capacity=CAPACITY):
        self._queue = queue.Queue(capacity)
        self._last = {}
        self._lock = threading.Lock()
        self.overflow = RateLimitedLog(logging.getLogger(__name__), "actions")

    def put(self, action, source="?"):
        """Queue `action`; `source` ('midi', 'osc', 'keys', ...) marks that input active."""
        with self._lock:
            self._last[source] = time.monotonic()
        try:
            self._queue.put_nowait((action, source))
        except queue.Full:
            self.overflow.drop(f"{self._queue.maxsize} actions wait already; {type(action).__name__} from {source}")

    def drain(self):
        """Every action queued so far, oldest first (never blocks)."""
        return [action for action, _ in self.drain_with_sources()]

    def drain_with_sources(self):
        """Every (action, source) queued so far, oldest first (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def active(self, source, within=0.25):
        """Whether `source` put an action within the last `within` seconds (the HUD's activity light)."""
        with self._lock:
            last = self._last.get(source)
        return last is not None and time.monotonic() - last <= within
