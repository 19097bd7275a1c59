"""Offline scene timing: which scene plays at time t and how far a transition has progressed."""

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class ScenePosition:
    """The scene at a time; during a transition `previous` fades out as `mix` goes 0 -> 1."""

    scene: int
    previous: int | None = None
    mix: float = 1.0


class Timeline:
    """Scene i starts at the sum of the earlier durations; the next scene fades in over its first
    `transition_time` seconds. After the last scene ends, the last scene holds."""

    def __init__(self, durations, transition_time):
        self.starts = [0.0]
        for d in durations[:-1]:
            self.starts.append(self.starts[-1] + d)
        self.total = sum(durations)
        self.transition_time = transition_time

    def at(self, t):
        i = max(0, bisect.bisect_right(self.starts, t) - 1)
        into = t - self.starts[i]
        if i == 0 or into >= self.transition_time:
            return ScenePosition(i)
        return ScenePosition(i, i - 1, into / self.transition_time)
