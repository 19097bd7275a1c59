"""Where audio comes from, behind one interface: files, arrays, silence, sound cards and rehearsal playback."""
