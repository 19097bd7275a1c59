"""Scene changes in a live show: triggers instead of a schedule, quantized to the beat or bar, then crossfaded.

It answers the same question as the render's `Timeline` (which scene at time t, which one fades out, how far),
so the Director and the engine do not know whether a show is live. A latent-blend transition plugs in where `at`
returns the ScenePosition (it needs the two scenes and the mix); `upcoming` says which ones to compute ahead.
"""

from vj.show.timeline import ScenePosition


def next_boundary(now, quantize, beat):
    """The time of the next beat or bar after `now`, or `now` when not quantized or no tempo is locked.

    `beat` holds the musical variables at `now` (beat_phase, bar_phase, bpm, with 0 bpm meaning not locked)."""
    bpm = beat.get("bpm", 0.0)
    if quantize == "none" or bpm <= 0:
        return now
    period = 60.0 / bpm
    if quantize == "beat":
        return now + (1.0 - beat.get("beat_phase", 0.0)) * period
    beats_per_bar = beat.get("beats_per_bar", 4)
    return now + (1.0 - beat.get("bar_phase", 0.0)) * period * beats_per_bar


class LiveScenes:
    """The scene state of a show: current scene, the one fading out, a queued scene and a pending change."""

    def __init__(self, count, transition_time, quantize="none"):
        self.count = count
        self.transition_time = transition_time
        self.quantize = quantize
        self.current = 0
        self.previous = None
        self.started = -float("inf")  # show time the current scene's fade-in began
        self.queued = None  # where NextScene goes instead of current + 1
        self.pending = None  # (index, time) of a change waiting for its beat or bar
        self.begun = []  # (from, to, start time) of each change begun, until its reader takes them (`taken`)

    def jump(self, index, now, beat):
        """Change to scene `index` at the next boundary (now, beat or bar)."""
        self.pending = (index % self.count, next_boundary(now, self.quantize, beat))
        self.update(now)

    def next(self, now, beat):
        target = self.queued if self.queued is not None else self.current + 1
        self.queued = None
        self.jump(target, now, beat)

    def previous_scene(self, now, beat):
        self.jump(self.current - 1, now, beat)

    def queue(self, index):
        self.queued = index % self.count

    def resize(self, count):
        """After a reload with `count` scenes: indexes past the end wrap into range."""
        self.count = count
        self.current %= count
        self.previous = None if self.previous is None else self.previous % count
        self.queued = None if self.queued is None else self.queued % count
        self.pending = None if self.pending is None else (self.pending[0] % count, self.pending[1])

    def update(self, now):
        """Start a pending change whose time has come."""
        if self.pending is not None and now >= self.pending[1]:
            index, at = self.pending
            self.pending = None
            if index != self.current:
                self.begun.append((self.current, index, at))
                self.previous, self.current, self.started = self.current, index, at

    def taken(self):
        """The changes begun since the last call (a recording writes them), oldest first."""
        begun, self.begun = self.begun, []
        return begun

    def upcoming(self):
        """The (from, to) scene changes that may come next, most likely first: a pending change, the queued
        scene, the next and the previous one."""
        targets = [
            self.pending[0] if self.pending is not None else None,
            self.queued,
            (self.current + 1) % self.count,
            (self.current - 1) % self.count,
        ]
        pairs = []
        for target in targets:
            if target is not None and target != self.current and (self.current, target) not in pairs:
                pairs.append((self.current, target))
        return pairs

    def at(self, t):
        """The ScenePosition at show time `t` (call `update` first)."""
        into = t - self.started
        if self.previous is None or self.transition_time <= 0 or into >= self.transition_time:
            return ScenePosition(self.current)
        return ScenePosition(self.current, self.previous, max(0.0, into) / self.transition_time)
