"""Control variables: named values a performer sets live (MIDI knobs, OSC faders), read by expressions like audio
variables.

A control has a default, a range and a curve; the curve maps a knob's position p (0..1) to a value:
`linear` lo + p (hi - lo); `exponential` lo (hi/lo)^p (frequencies, zoom speeds: needs 0 < lo < hi);
`square` lo + p^2 (hi - lo) (fine control near lo).
"""

import math
from dataclasses import dataclass

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


class Controls:
    """The current value of every control; written by the show thread between frames, read by anyone."""

    def __init__(self, specs=()):
        self.specs = {s.name: s for s in specs}
        self.values = {s.name: float(s.default) for s in specs}

    def set(self, name, value):
        """Set `name` (a known control) to `value` clamped to its range; returns the value set."""
        spec = self.specs[name]
        self.values[name] = v = min(max(float(value), spec.lo), spec.hi)
        return v

    def respec(self, specs):
        """New specs after a preset reload: kept controls keep their value (clamped), new ones start at default."""
        old = self.values
        self.specs = {s.name: s for s in specs}
        self.values = {s.name: min(max(old.get(s.name, s.default), s.lo), s.hi) for s in specs}
