"""An audio file's facts (sample rate, length) read without decoding it: presets check their track with them."""

from pathlib import Path

import soundfile

from vj.errors import AudioError

SUPPORTED = "wav, flac, ogg, mp3 (anything libsndfile reads)"


def audio_info(path):
    """soundfile's info for `path`, or AudioError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file '{path}' not found")
    try:
        return soundfile.info(str(path))
    except Exception as exc:  # libsndfile reports every unreadable format its own way
        raise AudioError(f"audio file '{path}' cannot be read ({exc}); supported: {SUPPORTED}") from None
