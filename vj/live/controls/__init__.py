"""Show controls: typed actions on one bus, control variables, and the inputs that make them (MIDI, OSC, keys)."""
