"""MIDI input for live shows: knobs (CC) set control variables, notes and pads trigger show actions.

`map` turns a preset's `midi` section and the bindings learned during shows into a MidiMap; `learned` keeps those
bindings in `SHOW.midi.yaml` beside `SHOW.yaml`; `ports` lists and opens MIDI ports (the only module that loads
mido); `input` reads one port on its own thread and puts actions on the ActionBus.
"""
