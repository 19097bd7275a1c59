"""MIDI ports: listing the input ports and opening one by part of its name (mido's rtmidi backend).

This is the only module that loads mido, and only when called, so `vj check` and `vj schema` never load it. On
Linux the ALSA sequencer is checked first: asked without it, libasound prints an error line at every try.
"""

import os
import sys

from vj.errors import VjError

ALSA_SEQUENCER = "/dev/snd/seq"
NO_SEQUENCER = (
    "on Linux MIDI needs the ALSA sequencer, /dev/snd/seq: load the snd-seq kernel module (sudo modprobe snd-seq)"
)


class MidiError(VjError):
    """MIDI cannot be used here (no backend, no matching port); the message is one line."""


def midi_port_names():
    """Names of the MIDI input ports (mido's default backend, rtmidi), or MidiError when no backend works here."""
    if sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQUENCER):
        # asked anyway, libasound would print an error line to stderr at each retry of a show
        raise MidiError(f"no MIDI backend works here: {NO_SEQUENCER}")
    try:
        import mido

        return list(mido.get_input_names())
    except ImportError as exc:
        raise MidiError(f"MIDI needs the Python packages mido and python-rtmidi ({exc})") from None
    except OSError as exc:  # rtmidi's errors are OSErrors; without /dev/snd/seq every call fails
        raise MidiError(
            f"no MIDI backend works here: {str(exc).strip() or type(exc).__name__} ({NO_SEQUENCER})"
        ) from None


def open_matching_input(substring):
    """Open the first MIDI input port whose name contains `substring` (case-insensitive), or raise MidiError."""
    names = midi_port_names()
    matches = [n for n in names if substring.lower() in n.lower()]
    if not matches:
        raise MidiError(f"no MIDI input port name contains '{substring}' (ports here: {', '.join(names) or 'none'})")
    import mido

    try:
        return mido.open_input(matches[0])
    except OSError as exc:
        raise MidiError(f"cannot open MIDI input '{matches[0]}': {exc}") from None
