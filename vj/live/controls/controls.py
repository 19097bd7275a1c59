"""Control variables: named values a performer sets live (MIDI knobs, OSC faders), read by expressions like audio
variables.

A control has a default, a range and a curve; the curve maps a knob's position p (0..1) to a value:
`linear` lo + p (hi - lo); `exponential` lo (hi/lo)^p (frequencies, zoom speeds: needs 0 < lo < hi);
`square` lo + p^2 (hi - lo) (fine control near lo).
"""


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
