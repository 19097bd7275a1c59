"""What the user may read: one base error, and the audio error that presets, files and devices share.

Every error raised for the user to read derives from VjError: its message is one line (or one line per problem)
naming the file, key, value or device and what would be valid. The command line prints it without a traceback and
exits with status 2; subsystems define their own errors under it (PresetError, EngineError, MidiError, ...). This
module imports nothing, so every room of vj can raise and catch these types.
"""


class VjError(Exception):
    """A problem the user can fix, with the message they will read."""


class AudioError(VjError):
    """Audio input that cannot be used; the message names the file, filter or device and what is valid."""
